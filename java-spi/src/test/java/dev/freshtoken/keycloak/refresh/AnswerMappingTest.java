package dev.freshtoken.keycloak.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.keycloak.models.KeycloakSession;

import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.ErrorCode;

/** CoreMapping.respond: each of the core's error codes becomes the app's answer with its documented status. */
class AnswerMappingTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    private final KeycloakSession session = Fakes.session(new Fakes.SingleUse());
    private final FreshTokenConfig config = Fakes.config(Map.of());
    private final CoreMapping mapping = new CoreMapping(session, config, r -> {
        throw new AssertionError("no core call");
    });

    @Test
    void each_contract_error_code_maps_to_its_documented_status_and_code() throws Exception {
        for (ErrorCode code : ErrorCode.values()) {
            if (!code.inContract()) {
                continue;
            }
            TokenService.Outcome o = mapping.respond(CoreAnswer.error(code, "why"));
            assertEquals(code.status(), o.status(), code.code());
            assertEquals(code.code(), o.errorCode());
            JsonNode body = JSON.readTree(o.body());
            assertEquals(code.code(), body.path("error").asText());
            assertEquals("why", body.path("error_description").asText());
        }
    }

    @Test
    void the_core_status_and_retry_after_reach_the_app() throws Exception {
        TokenService.Outcome o = mapping.respond(CoreAnswer.parse(
                "{\"err\":{\"code\":\"retry_later\",\"status\":503,\"retry_after_s\":7,\"error_description\":\"busy\","
                        + "\"upstream\":{\"status\":429,\"error\":\"temporarily_unavailable\"}}}"));
        assertEquals(503, o.status());
        assertEquals(7L, o.retryAfter());
        JsonNode body = JSON.readTree(o.body());
        assertEquals(7, body.path("retry_after_s").asInt());
        assertEquals(429, body.path("upstream").path("status").asInt());
    }

    @Test
    void an_ok_answer_is_the_token_response_alone() throws Exception {
        TokenService.Outcome o = mapping.respond(CoreAnswer.parse(
                "{\"ok\":{\"action\":\"serve\",\"response\":{\"access_token\":\"AT-SAMPLE-9\"},\"diag\":[\"serve\"]}}"));
        assertEquals(200, o.status());
        assertNull(o.errorCode());
        assertEquals("{\"access_token\":\"AT-SAMPLE-9\"}", o.body());
    }

    @Test
    void an_answer_without_ok_or_err_is_internal_error_500() {
        TokenService.Outcome o = mapping.respond(CoreAnswer.parse("{\"neither\":1}"));
        assertEquals(500, o.status());
        assertEquals("internal_error", o.errorCode());
    }

    @Test
    void reauth_required_without_a_calling_client_has_no_account_link() throws Exception {
        TokenService.Outcome o = mapping.respond(CoreAnswer.error(ErrorCode.REAUTH_REQUIRED, "sign in again"));
        assertEquals(400, o.status());
        assertEquals(false, JSON.readTree(o.body()).has("account-link-url"));
    }
}
