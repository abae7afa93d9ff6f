package dev.freshtoken.keycloak.nativecore;

import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The one builder of the error envelope our HTTP answers carry:
 * {@code {"error": code, "error_description": ..., "upstream": {...}?, "retry_after_s": n?}},
 * {@code Retry-After} with {@code retry_after_s}. The status is the code's unless the core sent
 * its own (an err answer carries {@code status}; the refresh flow builds its answers from
 * {@link #body} as values, see TokenService.Outcome).
 */
public final class ErrorReply {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    private ErrorReply() {
    }

    /** The JSON body; {@code description} null leaves {@code error_description} out. */
    public static ObjectNode body(String code, String description, JsonNode upstream, Long retryAfter) {
        ObjectNode body = MAPPER.createObjectNode();
        body.put("error", code);
        if (description != null) {
            body.put("error_description", description);
        }
        if (upstream != null) {
            body.set("upstream", upstream);
        }
        if (retryAfter != null) {
            body.put("retry_after_s", retryAfter);
        }
        return body;
    }

    public static Response of(ErrorCode code, String description) {
        return of(code.code(), code.status(), description, null, null);
    }

    private static Response of(String code, int status, String description, JsonNode upstream, Long retryAfter) {
        Response.ResponseBuilder b = Response.status(status).entity(body(code, description, upstream, retryAfter).toString())
                .type(MediaType.APPLICATION_JSON_TYPE);
        if (retryAfter != null) {
            b.header("Retry-After", Long.toString(retryAfter));
        }
        return b.build();
    }
}
