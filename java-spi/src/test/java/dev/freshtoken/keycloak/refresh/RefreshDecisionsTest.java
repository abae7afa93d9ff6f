package dev.freshtoken.keycloak.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.KeycloakSession;

import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.CoreRequest;

/**
 * The refresh service's decisions with Keycloak faked at the SPI edge (session, context, user
 * provider, single-use store), the native core and the database rows scripted ({@link Fakes}):
 * serve without a lock, the holder's refresh and lock release, a shared failure for waiters,
 * a waiter served by the holder's write, a takeover that shares the holder's failure, the
 * node's refresh limit, and the refusals that never reach the core.
 */
class RefreshDecisionsTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String SERVE = "{\"ok\":{\"action\":\"serve\",\"response\":{\"access_token\":\"AT-SAMPLE-1\",\"expires_in\":900}}}";
    private static final String REFRESH = "{\"ok\":{\"action\":\"refresh\"}}";
    private static final String REFRESHED = "{\"ok\":{\"action\":\"refreshed\",\"response\":{\"access_token\":\"AT-SAMPLE-2\"},"
            + "\"store\":\"{}\",\"upstream_ms\":12}}";
    private static final String UPSTREAM_FAILED = "{\"err\":{\"code\":\"upstream_error\",\"status\":502,"
            + "\"error_description\":\"The identity provider answered something unusable.\"}}";
    private static final String NEW_STORED = "{\"access_token\":\"AT-SAMPLE-new\",\"refresh_token\":\"RT-SAMPLE-new\"}";

    private final Fakes.SingleUse store = new Fakes.SingleUse();
    private final Fakes.Core core = new Fakes.Core();
    private final Fakes.Rows rows = new Fakes.Rows();

    @AfterEach
    void resetLimiter() {
        RefreshLimiter.reset();
    }

    private TokenService.Outcome retrieve(Map<String, String> settings, String clientId, String stored) {
        FreshTokenConfig config = Fakes.config(settings);
        KeycloakSession session = Fakes.session(store, clientId);
        TokenService service = new TokenService(session, config, new CoreMapping(session, config, core), rows);
        return service.retrieve(new FederatedIdentityModel(Fakes.ALIAS, "oid-1", "alice", stored), null,
                TokenService.Endpoint.V1, null);
    }

    private TokenService.Outcome retrieve() {
        return retrieve(Map.of(), null, Fakes.STORED);
    }

    private static String lockKey() {
        return TokenService.lockKey(Fakes.REALM_ID, Fakes.USER_ID, Fakes.ALIAS);
    }

    private static String failureKey() {
        Ask ask = new Ask(TokenService.Endpoint.V1, null, null,
                new CoreRequest.Binding(Fakes.REALM_ID, Fakes.USER_ID, Fakes.ALIAS, "oid-1"));
        return SingleFlight.failureKey(Fakes.REALM_ID, Fakes.USER_ID, Fakes.ALIAS, ask);
    }

    private static JsonNode body(TokenService.Outcome o) throws Exception {
        return JSON.readTree(o.body());
    }

    private static JsonNode request(CoreRequest r) throws Exception {
        return JSON.readTree(r.json());
    }

    @Test
    void a_stored_token_the_core_may_serve_is_served_without_the_lock_or_the_database() throws Exception {
        core.answer(SERVE);
        TokenService.Outcome o = retrieve();
        assertEquals(200, o.status());
        assertEquals("AT-SAMPLE-1", body(o).path("access_token").asText());
        assertNull(o.errorCode());
        assertFalse(o.askedIdp());
        assertTrue(store.lockAttempts.isEmpty(), "no lock for the fresh path");
        assertEquals(0, rows.reads + rows.refreshes);
        assertEquals(java.util.List.of("check"), core.ops());
        JsonNode req = request(core.requests.get(0));
        assertEquals(Fakes.STORED, req.path("stored").asText());
        assertFalse(req.has("idp"), "a check carries no IdP block (no secret)");
    }

    @Test
    void the_holder_refreshes_under_the_lock_and_releases_it() throws Exception {
        core.answer(REFRESH);
        rows.held = new RowLockedRefresh.Held(CoreAnswer.parse(REFRESHED), TokenService.fingerprint(Fakes.STORED));
        TokenService.Outcome o = retrieve();
        assertEquals(200, o.status());
        assertEquals("AT-SAMPLE-2", body(o).path("access_token").asText());
        assertTrue(o.askedIdp());
        assertEquals(1, rows.refreshes);
        assertEquals(java.util.List.of(lockKey()), store.lockAttempts);
        assertFalse(store.entries.containsKey(lockKey()), "lock released");
        assertFalse(store.entries.containsKey(failureKey()), "nothing to share after a success");
    }

    @Test
    void a_failed_refresh_is_recorded_for_the_waiters_of_the_same_question_and_row() throws Exception {
        core.answer(REFRESH);
        rows.held = new RowLockedRefresh.Held(CoreAnswer.parse(UPSTREAM_FAILED), TokenService.fingerprint(Fakes.STORED));
        TokenService.Outcome o = retrieve();
        assertEquals(502, o.status());
        assertEquals("upstream_error", o.errorCode());
        Map<String, String> shared = store.entries.get(failureKey());
        assertEquals(TokenService.fingerprint(Fakes.STORED), shared.get("row"));
        assertEquals("upstream_error", CoreAnswer.parse(shared.get("answer")).code());
        assertFalse(store.entries.containsKey(lockKey()), "lock released after a failure too");
    }

    @Test
    void a_waiter_serves_the_token_the_holder_stored_without_refreshing() throws Exception {
        store.lockAnswers.add(false); // another request holds the lock
        rows.committed.add(NEW_STORED);
        core.answer(REFRESH).answer(SERVE);
        TokenService.Outcome o = retrieve();
        assertEquals(200, o.status());
        assertEquals(0, rows.refreshes, "the waiter never refreshes itself");
        assertEquals(java.util.List.of("check", "check"), core.ops());
        assertEquals(NEW_STORED, request(core.requests.get(1)).path("stored").asText(), "checks the committed row");
        assertEquals(Fakes.USER_ID, request(core.requests.get(1)).path("binding").path("user").asText());
    }

    @Test
    void a_waiter_that_takes_over_shares_the_holders_failure_instead_of_asking_again() throws Exception {
        store.lockAnswers.add(false);
        store.lockAnswers.add(true);
        rows.committed.add(Fakes.STORED); // the holder failed: the row is unchanged
        AtomicInteger attempts = new AtomicInteger();
        store.onLockAttempt = () -> {
            if (attempts.incrementAndGet() == 2) { // the holder finished between the waiter's poll and its retry
                store.entries.put(failureKey(), Map.of("row", TokenService.fingerprint(Fakes.STORED), "answer", UPSTREAM_FAILED));
            }
        };
        core.answer(REFRESH).answer(REFRESH);
        TokenService.Outcome o = retrieve();
        assertEquals(502, o.status());
        assertEquals("upstream_error", o.errorCode());
        assertEquals(0, rows.refreshes, "the failure is shared, the IdP not asked again");
        assertFalse(o.askedIdp());
    }

    @Test
    void a_failure_recorded_for_another_row_is_not_shared_and_the_taker_refreshes() throws Exception {
        store.lockAnswers.add(false);
        store.lockAnswers.add(true);
        rows.committed.add(Fakes.STORED);
        store.entries.put(failureKey(), Map.of("row", TokenService.fingerprint(NEW_STORED), "answer", UPSTREAM_FAILED));
        rows.held = new RowLockedRefresh.Held(CoreAnswer.parse(REFRESHED), TokenService.fingerprint(Fakes.STORED));
        core.answer(REFRESH).answer(REFRESH);
        TokenService.Outcome o = retrieve();
        assertEquals(200, o.status());
        assertEquals(1, rows.refreshes);
        assertTrue(o.askedIdp());
    }

    /** A retrieval while the node's only refresh permit is taken by another request. */
    private TokenService.Outcome retrieveAtTheRefreshLimit() {
        RefreshLimiter.configure("1", "0");
        Semaphore taken = RefreshLimiter.tryAcquire();
        try {
            return retrieve();
        } finally {
            taken.release();
        }
    }

    @Test
    void at_the_refresh_limit_a_stored_token_still_valid_at_all_is_served() throws Exception {
        core.answer(REFRESH).answer(SERVE);
        TokenService.Outcome o = retrieveAtTheRefreshLimit();
        assertEquals(200, o.status());
        assertEquals(0, rows.refreshes);
        assertEquals(0, request(core.requests.get(1)).path("policy").path("min_validity_s").asInt(-1));
        assertFalse(store.entries.containsKey(lockKey()));
    }

    @Test
    void at_the_refresh_limit_a_spent_stored_token_answers_retry_later_with_retry_after() throws Exception {
        core.answer(REFRESH).answer(REFRESH);
        TokenService.Outcome o = retrieveAtTheRefreshLimit();
        assertEquals(503, o.status());
        assertEquals("retry_later", o.errorCode());
        assertEquals(RefreshLimiter.RETRY_AFTER_S, o.retryAfter());
        assertEquals(RefreshLimiter.RETRY_AFTER_S, body(o).path("retry_after_s").asLong());
        assertEquals(0, rows.refreshes);
    }

    @Test
    void a_row_gone_under_the_lock_answers_reauth_required() {
        core.answer(REFRESH);
        rows.held = null;
        TokenService.Outcome o = retrieve();
        assertEquals(400, o.status());
        assertEquals("reauth_required", o.errorCode());
        assertFalse(store.entries.containsKey(lockKey()));
    }

    @Test
    void a_client_off_the_allow_list_is_refused_before_any_core_call() throws Exception {
        TokenService.Outcome o = retrieve(Map.of(FreshTokenConfig.ALLOWED_CLIENTS, "other-app"), "web-app", Fakes.STORED);
        assertEquals(403, o.status());
        assertEquals("forbidden", body(o).path("error").asText());
        assertTrue(body(o).path("error_description").asText().contains("web-app"));
        assertTrue(core.requests.isEmpty());
    }

    @Test
    void an_unsupported_client_authentication_is_idp_misconfigured_without_a_core_call() {
        TokenService.Outcome o = retrieve(Map.of("clientAuthMethod", "client_secret_jwt"), null, Fakes.STORED);
        assertEquals(502, o.status());
        assertEquals("idp_misconfigured", o.errorCode());
        assertTrue(core.requests.isEmpty());
    }

    @Test
    void no_stored_token_is_reauth_required_without_a_core_call() {
        TokenService.Outcome o = retrieve(Map.of(), null, "");
        assertEquals(400, o.status());
        assertEquals("reauth_required", o.errorCode());
        assertTrue(core.requests.isEmpty());
    }

    // ---- the fresh path (serveFresh: one native call on bytes, no envelope) --------------------

    private TokenService.Outcome retrieveFast(CoreMapping.FastCore fast, TokenService.Endpoint endpoint, String scope) {
        FreshTokenConfig config = Fakes.config(Map.of("resourceScopes", "https://graph.microsoft.com/User.Read"));
        KeycloakSession session = Fakes.session(store, null);
        TokenService service = new TokenService(session, config, new CoreMapping(session, config, core, fast), rows);
        return service.retrieve(new FederatedIdentityModel(Fakes.ALIAS, "oid-1", "alice", Fakes.STORED), null, endpoint, scope);
    }

    @Test
    void a_fresh_token_is_served_from_the_fast_call_as_its_bytes_without_an_envelope_or_a_lock() throws Exception {
        byte[] bytes = "{\"access_token\":\"AT-SAMPLE-fast\",\"expires_in\":900}".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.util.List<String> seen = new java.util.ArrayList<>();
        TokenService.Outcome o = retrieveFast((stored, now, min, rt, id, binding) -> {
            seen.add(stored + "|" + rt + "|" + id + "|" + binding.alias() + "|" + binding.subject());
            return bytes;
        }, TokenService.Endpoint.V1, null);
        assertEquals(200, o.status());
        assertTrue(o.bodyBytes() == bytes, "the core's bytes are written as they are");
        assertEquals("AT-SAMPLE-fast", body(o).path("access_token").asText());
        assertEquals(java.util.List.of(Fakes.STORED + "|false|true|" + Fakes.ALIAS + "|oid-1"), seen);
        assertEquals(java.util.List.of(), core.ops(), "no envelope op");
        assertTrue(store.lockAttempts.isEmpty(), "no lock on the fresh path");
    }

    @Test
    void when_the_fast_call_declines_the_envelope_check_decides() throws Exception {
        core.answer(SERVE);
        TokenService.Outcome o = retrieveFast((stored, now, min, rt, id, binding) -> null, TokenService.Endpoint.V2, null);
        assertEquals(200, o.status());
        assertEquals("AT-SAMPLE-1", body(o).path("access_token").asText());
        assertEquals(java.util.List.of("check"), core.ops());
    }

    @Test
    void a_resource_token_never_takes_the_fast_call() throws Exception {
        core.answer(SERVE);
        TokenService.Outcome o = retrieveFast((stored, now, min, rt, id, binding) -> {
            throw new AssertionError("the fast call is for the IdP's own token only");
        }, TokenService.Endpoint.V1, "https://graph.microsoft.com/User.Read");
        assertEquals(200, o.status());
        assertEquals(java.util.List.of("check"), core.ops());
    }
}
