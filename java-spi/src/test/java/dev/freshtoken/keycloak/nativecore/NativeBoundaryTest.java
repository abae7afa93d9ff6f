package dev.freshtoken.keycloak.nativecore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The JNI boundary seen from Java, run under -Xcheck:jni (see the surefire configuration):
 * the real library built by cargo is loaded and each kind of outcome arrives as documented.
 */
class NativeBoundaryTest {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    @BeforeAll
    static void loadTheRealLibrary() {
        File dir = new File(System.getProperty("freshtoken.test.native.dir", "../target/test-panic/release"));
        NativeLibrary.configurePath(new File(dir, NativeLibrary.LIBRARY_FILE).getAbsolutePath());
        NativeLibrary.Status s = NativeLibrary.ensureLoaded();
        assertEquals(NativeLibrary.State.LOADED, s.state(), "native core must load for these tests: " + s.problem());
    }

    @Test
    void versionMatchesTheProviderAndTheContract() throws Exception {
        JsonNode v = MAPPER.readTree(NativeCore.version());
        assertEquals(NativeLibrary.providerVersion(), v.path("version").asText());
        assertEquals(NativeCore.CONTRACT_VERSION, v.path("contract").asInt());
    }

    @Test
    void aPanicInTheCoreArrivesAsRuntimeExceptionWithoutPayload() {
        RuntimeException e = assertThrows(RuntimeException.class, NativeLibrary::panicForTest);
        assertTrue(e.getMessage() != null && e.getMessage().toLowerCase().contains("panic"), e.getMessage());
        // The JVM and the library stay usable after a panic.
        assertTrue(NativeCore.version().contains("contract"));
    }

    @Test
    void anUnparseableRequestIsAnErrEnvelopeNotAnException() throws Exception {
        JsonNode answer = MAPPER.readTree(NativeLibrary.call("this is not json"));
        assertEquals("internal_error", answer.path("err").path("code").asText());
        assertFalse(answer.has("ok"));
    }

    @Test
    void aFreshStoredTokenIsServedWithRemainingLifetimeAndNoRefreshToken() throws Exception {
        long now = 1_800_000_000L;
        String stored = "{\"access_token\":\"at-secret-value\",\"token_type\":\"Bearer\",\"expires_in\":3599,"
                + "\"refresh_token\":\"rt-secret-value\",\"accessTokenExpiration\":" + (now + 1000) + "}";
        String req = MAPPER.createObjectNode().put("v", NativeCore.CONTRACT_VERSION).put("op", "retrieve").put("now", now).put("stored", stored)
                .set("policy", MAPPER.createObjectNode().put("min_validity_s", 60)).toString();
        JsonNode ok = MAPPER.readTree(NativeLibrary.call(req)).path("ok");
        assertEquals("serve", ok.path("action").asText());
        assertEquals("at-secret-value", ok.path("response").path("access_token").asText());
        assertEquals(1000, ok.path("response").path("expires_in").asInt());
        assertFalse(ok.path("response").has("refresh_token"));
        assertFalse(ok.has("store") && !ok.get("store").isNull());
    }

    @Test
    void anExpiredTokenWithoutRefreshTokenIsReauthRequired() throws Exception {
        long now = 1_800_000_000L;
        String stored = "{\"access_token\":\"at\",\"token_type\":\"Bearer\",\"accessTokenExpiration\":" + (now - 5) + "}";
        String req = MAPPER.createObjectNode().put("v", NativeCore.CONTRACT_VERSION).put("op", "retrieve").put("now", now).put("stored", stored)
                .set("policy", MAPPER.createObjectNode().put("min_validity_s", 60)).toString();
        JsonNode err = MAPPER.readTree(NativeLibrary.call(req)).path("err");
        assertEquals("reauth_required", err.path("code").asText());
        assertEquals(400, err.path("status").asInt());
    }

    @Test
    void serveFreshAnswersTheBodyBytesOfAFreshTokenAndNullForEverythingElse() throws Exception {
        long now = 1_800_000_000L;
        String fresh = "{\"access_token\":\"at-secret-value\",\"token_type\":\"Bearer\",\"expires_in\":3599,"
                + "\"refresh_token\":\"rt-secret-value\",\"id_token\":\"id-value\",\"accessTokenExpiration\":" + (now + 1000) + "}";
        byte[] body = NativeLibrary.serveFresh(fresh.getBytes(java.nio.charset.StandardCharsets.UTF_8), now, 60, 2,
                "realm-id", "user-id", "entra", "oid-1");
        JsonNode r = MAPPER.readTree(body);
        assertEquals("at-secret-value", r.path("access_token").asText());
        assertEquals(1000, r.path("expires_in").asInt());
        assertFalse(r.has("refresh_token"));
        assertEquals("id-value", r.path("id_token").asText());
        assertFalse(MAPPER.readTree(NativeLibrary.serveFresh(fresh.getBytes(java.nio.charset.StandardCharsets.UTF_8), now, 60, 0,
                null, null, null, null)).has("id_token"), "flags bit 1 off: no id token");
        String due = fresh.replace(Long.toString(now + 1000), Long.toString(now + 30));
        assertEquals(null, NativeLibrary.serveFresh(due.getBytes(java.nio.charset.StandardCharsets.UTF_8), now, 60, 0,
                null, null, null, null), "a refresh is due: ask check");
        assertEquals(null, NativeLibrary.serveFresh(new byte[] {(byte) 0xff, '{'}, now, 60, 0, null, null, null, null));
        assertEquals(null, NativeLibrary.serveFresh(null, now, 60, 0, null, null, null, null));
    }
}
