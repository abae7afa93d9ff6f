package dev.freshtoken.keycloak.refresh;

import java.util.Map;
import java.util.concurrent.Semaphore;

import org.jboss.logging.Logger;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.SingleUseObjectProvider;

import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.refresh.TokenService.Outcome;
import dev.freshtoken.keycloak.telemetry.Telemetry;

/**
 * Exactly one refresh per (realm, user, IdP) at a time, across the cluster: the holder of the
 * lock in Keycloak's single-use store refreshes ({@link RowLockedRefresh}) and shares a failure
 * with the callers that waited for it; the others poll the committed row and serve what the
 * holder stored. The node's limit of upstream refreshes ({@link RefreshLimiter}) is taken by the
 * holder only.
 */
final class SingleFlight {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    private final KeycloakSession session;
    private final FreshTokenConfig config;
    private final CoreMapping mapping;
    private final Rows row;

    /** The database side of a refresh ({@link RowLockedRefresh}; a fake in unit tests). */
    interface Rows {
        /** The committed stored token of the row, or null when the row (or its token) is gone. */
        String readStoredToken(String realmId, String userId);

        /** The refresh under the row lock; null when the row is gone. */
        RowLockedRefresh.Held refresh(Ask ask, String method);

        /** The answer when the database fails under us. */
        CoreAnswer storageUnavailable(RuntimeException e);
    }

    SingleFlight(KeycloakSession session, FreshTokenConfig config, CoreMapping mapping, Rows rows) {
        this.session = session;
        this.config = config;
        this.mapping = mapping;
        this.row = rows;
    }

    /**
     * Where a failed refresh's answer is shared with the callers that waited for it: per
     * (realm, user, IdP) and per question (the IdP's own token, a resource scope, an
     * on-behalf-of scope; V1 or V2 answer shape), so that a waiter is only ever handed the
     * failure of the very request it would have made (issue 11 item 9). The lock stays per
     * (realm, user, IdP): every kind spends the same stored refresh token.
     */
    static String failureKey(String realmId, String userId, String alias, Ask ask) {
        return "fresh-token:failed:" + realmId + ":" + userId + ":" + alias + ":" + TokenService.fingerprint(ask.question()).substring(0, 32);
    }

    /**
     * The node's refresh limit is reached: serve the stored token if it is still valid at all
     * (an early refresh that can wait, as after a transient IdP failure), else retry_later with
     * Retry-After. The row was neither locked nor written.
     */
    private Outcome refreshLimited(Ask ask, String stored) {
        CoreAnswer still = mapping.check(ask, stored, 0);
        if (!still.isError() && "serve".equals(still.action())) {
            return mapping.respond(still);
        }
        return CoreMapping.error(ErrorCode.RETRY_LATER, "Too many token refreshes are waiting for the identity provider on this server; "
                + "try again shortly.", RefreshLimiter.RETRY_AFTER_S);
    }

    /** The failure a concurrent holder recorded for this question, if it was for this very row; else null. */
    private Outcome sharedFailure(Map<String, String> failure, String current, Telemetry.Call telemetry) {
        if (failure == null || current == null || !TokenService.fingerprint(current).equals(failure.get("row"))) {
            return null;
        }
        telemetry.waited("failed");
        return mapping.respond(CoreAnswer.parse(failure.get("answer")));
    }

    /** Exactly one refresh per (realm, user, IdP) at a time, across the cluster; {@code stored}: the value the first check read. */
    Outcome refresh(Ask ask, String method, String stored, Telemetry.Call telemetry) {
        String realmId = ask.binding().realm();
        String userId = ask.binding().user();
        String alias = config.getAlias();
        String lockKey = TokenService.lockKey(realmId, userId, alias);
        String failureKey = failureKey(realmId, userId, alias, ask);
        SingleUseObjectProvider locks = session.singleUseObjects();
        long waitUntil = System.currentTimeMillis() + (TokenService.LOCK_TTL_S + 5) * 1000L;
        boolean waited = false;
        while (true) {
            if (locks.putIfAbsent(lockKey, TokenService.LOCK_TTL_S)) {
                try {
                    if (waited) {
                        // Took over after waiting: the holder may just have failed at this very
                        // question for this row; share that outcome instead of asking again.
                        Map<String, String> failure = locks.get(failureKey);
                        Outcome shared = failure == null ? null : sharedFailure(failure, row.readStoredToken(realmId, userId), telemetry);
                        if (shared != null) {
                            return shared;
                        }
                    }
                    // The node's limit of upstream refreshes, taken before the database
                    // connection and the row lock (RefreshLimiter; issue 11 item 12).
                    Semaphore permit = RefreshLimiter.tryAcquire();
                    if (permit == null) {
                        return refreshLimited(ask, stored);
                    }
                    RowLockedRefresh.Held held;
                    try {
                        held = row.refresh(ask, method);
                    } finally {
                        permit.release();
                    }
                    if (held == null) {
                        return mapping.reauth("No token is stored for this user and identity provider any more.", null);
                    }
                    if (waited) {
                        telemetry.waited("took_over");
                    }
                    CoreAnswer answer = held.answer();
                    if (answer.isError() && held.rowFingerprint() != null) {
                        locks.put(failureKey, TokenService.FAILURE_TTL_S, Map.of("row", held.rowFingerprint(), "answer", answer.raw()));
                    } else if (waited && LOG.isDebugEnabled()) {
                        LOG.debugf("fresh-token: IdP '%s' user %s: took over the refresh after waiting", alias, userId);
                    }
                    return mapping.respond(answer).asked();
                } finally {
                    locks.remove(lockKey);
                }
            }
            // Another request (on this node or another) is refreshing: wait for its result.
            waited = true;
            TokenService.sleep(TokenService.POLL_MS);
            String current;
            try {
                current = Kept.effective(locks, realmId, userId, alias, row.readStoredToken(realmId, userId));
            } catch (RuntimeException e) {
                return mapping.respond(row.storageUnavailable(e));
            }
            if (current == null) {
                telemetry.waited("gone");
                return mapping.reauth("No token is stored for this user and identity provider any more.", null);
            }
            Outcome shared = sharedFailure(locks.get(failureKey), current, telemetry);
            if (shared != null) {
                return shared;
            }
            CoreAnswer check = mapping.check(ask, current);
            if (check.isError() || !"refresh".equals(check.action())) {
                if (LOG.isDebugEnabled()) {
                    LOG.debugf("fresh-token: IdP '%s' user %s: served the token refreshed by a concurrent request", alias, userId);
                }
                telemetry.waited(check.isError() ? "failed" : "served");
                return mapping.respond(check);
            }
            if (System.currentTimeMillis() > waitUntil) {
                telemetry.waited("timeout");
                return CoreMapping.error(ErrorCode.RETRY_LATER, "Another request is still refreshing this token; try again shortly.", 1L);
            }
        }
    }
}
