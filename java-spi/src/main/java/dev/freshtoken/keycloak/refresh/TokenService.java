package dev.freshtoken.keycloak.refresh;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.Map;

import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.UriBuilder;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.jboss.logging.Logger;
import org.keycloak.common.util.Time;
import org.keycloak.events.Errors;
import org.keycloak.events.EventBuilder;
import org.keycloak.models.ClientModel;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.SingleUseObjectProvider;
import org.keycloak.models.UserModel;
import org.keycloak.models.UserProvider;
import org.keycloak.models.utils.KeycloakModelUtils;
import org.keycloak.vault.VaultStringSecret;

import dev.freshtoken.keycloak.nativecore.NativeLibrary;
import dev.freshtoken.keycloak.nativecore.NativeUnavailableException;
import dev.freshtoken.keycloak.endpoint.RedirectMatch;
import dev.freshtoken.keycloak.idp.Assertions;
import dev.freshtoken.keycloak.idp.EntraConfig;
import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.idp.FreshTokenIdentityProvider;
import dev.freshtoken.keycloak.outbound.Outbound;
import dev.freshtoken.keycloak.secrets.IdpSecrets;
import dev.freshtoken.keycloak.storage.Storage;
import dev.freshtoken.keycloak.storage.StoredRow;
import dev.freshtoken.keycloak.telemetry.Telemetry;

/**
 * One token retrieval: ask the core whether the stored token can be served; if it must be
 * refreshed, take the cluster-wide lock for (realm, user, IdP), re-read the row in a fresh
 * transaction, let the core refresh, persist the new token set in a transaction of our own
 * and only then release the lock. Callers that find the lock taken wait (bounded) for the
 * holder's result. Token values never reach a log line or an exception message here.
 */
public final class TokenService {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");
    private static final ObjectMapper MAPPER = new ObjectMapper();

    /** Lock lifetime: longer than the longest refresh (deadline) plus persistence. */
    public static final int LOCK_TTL_S = 45;
    /** How long a failed refresh's outcome is shared with the callers that waited for it. */
    static final int FAILURE_TTL_S = 10;
    public static final long POLL_MS = 50;

    public enum Endpoint { V1, V2 }

    static final java.util.Set<String> SUPPORTED_AUTH = java.util.Set.of("client_secret_post", "client_secret_basic", "private_key_jwt");

    /** The HTTP answer and, for errors, our error code. */
    public record Outcome(Response response, String errorCode) {
        public boolean isError() {
            return errorCode != null;
        }
    }

    private final KeycloakSession session;
    private final FreshTokenIdentityProvider provider;
    private final FreshTokenConfig config;
    /** A token for another resource (scope string), or null for the IdP's own token set. */
    private String resourceScope;
    /** A downstream on-behalf-of token (scope string), or null. */
    private String oboScope;
    /** Events and metrics of this retrieval (Telemetry.java); the core's last answer and whether we asked the IdP. */
    private Telemetry.Call telemetry;
    private Answer lastAnswer;
    private boolean askedIdp;
    /** The user's id at the IdP (FederatedIdentityModel.getUserId()): binds the encrypted row (Storage). */
    private String subject;
    /** Realm id and Keycloak user id of the row: bind the encrypted row too (Storage). */
    private String rowRealmId;
    private String rowUserId;

    public TokenService(KeycloakSession session, FreshTokenIdentityProvider provider) {
        this.session = session;
        this.provider = provider;
        this.config = provider.freshConfig();
    }

    public Outcome retrieve(FederatedIdentityModel identity, UserModel userOrNull, Endpoint endpoint, String resourceScope) {
        this.resourceScope = resourceScope == null || resourceScope.isBlank() ? null : FreshTokenConfig.normaliseScope(resourceScope);
        telemetry = new Telemetry.Call(session, config.getAlias(), endpoint == Endpoint.V1 ? "broker_v1" : "broker_v2");
        telemetry.kind(this.resourceScope == null ? Telemetry.Kind.IDP : Telemetry.Kind.RESOURCE, this.resourceScope);
        try {
            return recorded(doRetrieve(identity, userOrNull, endpoint));
        } catch (RuntimeException e) {
            if (isStorageFailure(e)) {
                return storageUnavailable(e);
            }
            LOG.errorf(e, "fresh-token: token retrieval for IdP '%s' failed unexpectedly", config.getAlias());
            return recorded(error("internal_error", 500, "Token retrieval failed unexpectedly; see the server log.", null, null));
        }
    }

    /** The caller of our own endpoints (obo, app-token), for their events. */
    public TokenService caller(ClientModel client, UserModel user) {
        this.callerClient = client;
        this.callerUser = user;
        return this;
    }

    private ClientModel callerClient;
    private UserModel callerUser;

    /** Hands the outcome to Telemetry (event details, metrics) and returns it. */
    private Outcome recorded(Outcome o) {
        if (telemetry != null) {
            telemetry.caller(callerClient, callerUser);
            telemetry.finish(o.errorCode(), lastAnswer == null ? null : lastAnswer.body(), askedIdp);
        }
        return o;
    }

    /** On-behalf-of: the same single-flight path, with the core's {@code obo} request. */
    public Outcome obo(FederatedIdentityModel identity, UserModel user, String scope) {
        String s0 = scope == null ? "" : FreshTokenConfig.normaliseScope(scope);
        telemetry = new Telemetry.Call(session, config.getAlias(), "obo");
        telemetry.kind(Telemetry.Kind.OBO, s0.isEmpty() ? null : s0);
        return recorded(oboOutcome(identity, user, scope));
    }

    private Outcome oboOutcome(FederatedIdentityModel identity, UserModel user, String scope) {
        String alias = config.getAlias();
        if (config.oboClientId().isEmpty()) {
            return error("idp_misconfigured", 502, "On-behalf-of is not configured for identity provider '" + alias
                    + "' (set the middle-tier client ID).", null, null);
        }
        String s = scope == null ? "" : FreshTokenConfig.normaliseScope(scope);
        if (s.isEmpty() || !config.oboScopeAllowed(s)) {
            return error("forbidden", 403, "Scope '" + s + "' is not among the on-behalf-of scopes apps may request for '"
                    + alias + "'.", null, null);
        }
        this.oboScope = s;
        telemetry.resourceAllowed();
        try {
            return doRetrieve(identity, user, Endpoint.V2);
        } catch (RuntimeException e) {
            if (isStorageFailure(e)) {
                return storageUnavailable(e);
            }
            LOG.errorf(e, "fresh-token: on-behalf-of for IdP '%s' failed unexpectedly", alias);
            return error("internal_error", 500, "On-behalf-of failed unexpectedly; see the server log.", null, null);
        }
    }

    /** App-only: client_credentials through the core's per-node cache (single flight inside the core). */
    public Outcome appToken(String scope) {
        String s0 = scope == null ? "" : FreshTokenConfig.normaliseScope(scope);
        telemetry = new Telemetry.Call(session, config.getAlias(), "app_token");
        telemetry.kind(Telemetry.Kind.APP, s0.isEmpty() ? null : s0);
        return recorded(appTokenOutcome(scope));
    }

    private Outcome appTokenOutcome(String scope) {
        String alias = config.getAlias();
        String s = scope == null ? "" : FreshTokenConfig.normaliseScope(scope);
        if (s.isEmpty() || !config.appTokenScopeAllowed(s)) {
            return error("forbidden", 403, "Scope '" + s + "' is not among the app-only scopes of '" + alias + "'.", null, null);
        }
        telemetry.resourceAllowed();
        askedIdp = true; // the core asks the IdP unless its cache serves (then no upstream_ms)
        String method = config.getClientAuthMethod();
        ObjectNode req = MAPPER.createObjectNode();
        req.put("v", 1).put("op", "app_token").put("now", Time.currentTime()).put("scope", s);
        req.putObject("policy").put("min_validity_s", config.minValiditySeconds());
        try {
            req.set("idp", idpBlock(method));
        } catch (Assertions.KeyFileRefused e) {
            return respond(keyFileRefused(e));
        }
        return respond(send(req.toString()));
    }

    private Outcome doRetrieve(FederatedIdentityModel identity, UserModel userOrNull, Endpoint endpoint) {
        String alias = config.getAlias();
        RealmModel realm = session.getContext().getRealm();
        ClientModel client = session.getContext().getClient();
        if (client != null && !config.clientMayReadTokens(client.getClientId())) {
            return error("forbidden", 403, "Client '" + client.getClientId() + "' is not allowed to read tokens of identity provider '"
                    + alias + "' (see the IdP's 'Clients allowed to read tokens').", null, null);
        }
        if (resourceScope != null && !config.resourceScopeAllowed(resourceScope)) {
            return error("forbidden", 403, "Scope '" + resourceScope + "' is not among the scopes apps may request for identity provider '"
                    + alias + "' (see the IdP's 'Scopes apps may request').", null, null);
        }
        if (resourceScope != null) {
            telemetry.resourceAllowed();
        }
        this.subject = identity.getUserId();
        // With storage keys the row's Keycloak user is part of what an encrypted value is bound to.
        UserModel rowUser = userOrNull != null || !Storage.configured() ? userOrNull
                : session.users().getUserByFederatedIdentity(realm, identity);
        this.rowRealmId = realm.getId();
        this.rowUserId = rowUser == null ? "" : rowUser.getId();
        String stored = identity.getToken();
        if (stored == null || stored.isBlank()) {
            return reauth("No token is stored for this user and identity provider; the user must sign in through '"
                    + alias + "' again.", null);
        }
        String method = config.getClientAuthMethod();
        if (method != null && !SUPPORTED_AUTH.contains(method)) {
            return error("idp_misconfigured", 502, "Client authentication method '" + method
                    + "' is not supported by this provider type; use client_secret_post, client_secret_basic or private_key_jwt.", null, null);
        }
        // The fresh path needs nothing but the row Keycloak already read: no user lookup, no lock.
        Answer first = callCore("check", stored, endpoint, method);
        if (first.isError() || !"refresh".equals(first.action())) {
            return respond(first);
        }
        UserModel user = rowUser != null ? rowUser : session.users().getUserByFederatedIdentity(realm, identity);
        if (user == null) {
            return reauth("The user linked to this identity could not be found.", null);
        }
        this.rowUserId = user.getId();
        return refreshSingleFlight(realm.getId(), user.getId(), endpoint, method, stored);
    }

    /**
     * The cluster-wide refresh lock of (realm, user, IdP) in Keycloak's single-use store; the admin
     * clear and the storage conversion take the same lock so they never race a refresh.
     */
    public static String lockKey(String realmId, String userId, String alias) {
        return "fresh-token:lock:" + realmId + ":" + userId + ":" + alias;
    }

    /**
     * Where a failed refresh's answer is shared with the callers that waited for it: per
     * (realm, user, IdP) and per question (the IdP's own token, a resource scope, an
     * on-behalf-of scope; V1 or V2 answer shape), so that a waiter is only ever handed the
     * failure of the very request it would have made (issue 11 item 9). The lock stays per
     * (realm, user, IdP): every kind spends the same stored refresh token.
     */
    private String failureKey(String realmId, String userId, String alias, Endpoint endpoint) {
        String asked = (oboScope != null ? "obo\n" + oboScope : resourceScope != null ? "resource\n" + resourceScope : "idp")
                + "\n" + endpoint;
        return "fresh-token:failed:" + realmId + ":" + userId + ":" + alias + ":" + fingerprint(asked).substring(0, 32);
    }

    /**
     * The node's refresh limit is reached: serve the stored token if it is still valid at all
     * (an early refresh that can wait, as after a transient IdP failure), else retry_later with
     * Retry-After. The row was neither locked nor written.
     */
    private Outcome refreshLimited(String stored, Endpoint endpoint, String method) {
        Answer still = callCore("check", stored, endpoint, method, 0);
        if (!still.isError() && "serve".equals(still.action())) {
            return respond(still);
        }
        return error("retry_later", 503, "Too many token refreshes are waiting for the identity provider on this server; "
                + "try again shortly.", null, RefreshLimiter.RETRY_AFTER_S);
    }

    /** The failure a concurrent holder recorded for this question, if it was for this very row; else null. */
    private Outcome sharedFailure(Map<String, String> failure, String current) {
        if (failure == null || current == null || !fingerprint(current).equals(failure.get("row"))) {
            return null;
        }
        telemetry.waited("failed");
        return respond(Answer.parse(failure.get("answer")));
    }

    /** Exactly one refresh per (realm, user, IdP) at a time, across the cluster; {@code stored}: the value the first check read. */
    private Outcome refreshSingleFlight(String realmId, String userId, Endpoint endpoint, String method, String stored) {
        String alias = config.getAlias();
        String lockKey = lockKey(realmId, userId, alias);
        String failureKey = failureKey(realmId, userId, alias, endpoint);
        SingleUseObjectProvider locks = session.singleUseObjects();
        long waitUntil = System.currentTimeMillis() + (LOCK_TTL_S + 5) * 1000L;
        boolean waited = false;
        while (true) {
            if (locks.putIfAbsent(lockKey, LOCK_TTL_S)) {
                try {
                    if (waited) {
                        // Took over after waiting: the holder may just have failed at this very
                        // question for this row; share that outcome instead of asking again.
                        Map<String, String> failure = locks.get(failureKey);
                        Outcome shared = failure == null ? null : sharedFailure(failure, readStoredToken(realmId, userId));
                        if (shared != null) {
                            return shared;
                        }
                    }
                    // The node's limit of upstream refreshes, taken before the database
                    // connection and the row lock (RefreshLimiter; issue 11 item 12).
                    java.util.concurrent.Semaphore permit = RefreshLimiter.tryAcquire();
                    if (permit == null) {
                        return refreshLimited(stored, endpoint, method);
                    }
                    Held held;
                    try {
                        held = refreshUnderRowLock(realmId, userId, endpoint, method);
                    } finally {
                        permit.release();
                    }
                    if (held == null) {
                        return reauth("No token is stored for this user and identity provider any more.", null);
                    }
                    if (waited) {
                        telemetry.waited("took_over");
                    }
                    askedIdp = true;
                    Answer answer = held.answer();
                    if (answer.isError() && held.rowFingerprint() != null) {
                        locks.put(failureKey, FAILURE_TTL_S, Map.of("row", held.rowFingerprint(), "answer", answer.raw()));
                    } else if (waited && LOG.isDebugEnabled()) {
                        LOG.debugf("fresh-token: IdP '%s' user %s: took over the refresh after waiting", alias, userId);
                    }
                    return respond(answer);
                } finally {
                    locks.remove(lockKey);
                }
            }
            // Another request (on this node or another) is refreshing: wait for its result.
            waited = true;
            sleep(POLL_MS);
            String current;
            try {
                current = Kept.effective(locks, realmId, userId, alias, readStoredToken(realmId, userId));
            } catch (RuntimeException e) {
                return storageUnavailable(e);
            }
            if (current == null) {
                telemetry.waited("gone");
                return reauth("No token is stored for this user and identity provider any more.", null);
            }
            Outcome shared = sharedFailure(locks.get(failureKey), current);
            if (shared != null) {
                return shared;
            }
            Answer check = callCore("check", current, endpoint, method);
            if (check.isError() || !"refresh".equals(check.action())) {
                if (LOG.isDebugEnabled()) {
                    LOG.debugf("fresh-token: IdP '%s' user %s: served the token refreshed by a concurrent request", alias, userId);
                }
                telemetry.waited(check.isError() ? "failed" : "served");
                return respond(check);
            }
            if (System.currentTimeMillis() > waitUntil) {
                telemetry.waited("timeout");
                return error("retry_later", 503, "Another request is still refreshing this token; try again shortly.", null, 1L);
            }
        }
    }

    /**
     * The stored token as committed in the database, read in a transaction of its own. It is read
     * from the local user storage (JPA), not through Keycloak's user cache: in a cluster, a node's
     * cached federated-identity link can still hold a token set another node has already replaced
     * (the cross-node invalidation arrives later), and refreshing with that spent refresh token
     * would be a reuse (cluster test). Users that are not in local storage fall back to the cache layer.
     */
    private String readStoredToken(String realmId, String userId) {
        String alias = config.getAlias();
        return KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
            RealmModel r = s.realms().getRealm(realmId);
            if (r == null) {
                return null;
            }
            s.getContext().setRealm(r); // user lookups need a realm-bound session
            UserProvider local = s.getProvider(UserProvider.class);
            UserModel lu = local == null ? null : local.getUserById(r, userId);
            if (lu != null) {
                FederatedIdentityModel fi = local.getFederatedIdentity(r, lu, alias);
                return fi == null ? null : fi.getToken();
            }
            UserModel u = s.users().getUserById(r, userId);
            FederatedIdentityModel fi = u == null ? null : s.users().getFederatedIdentity(r, u, alias);
            return fi == null ? null : fi.getToken();
        });
    }

    /** The holder's answer and the fingerprint of the row it refreshed (null if nothing was read). */
    private record Held(Answer answer, String rowFingerprint) {
    }

    /**
     * The refresh itself, in a transaction of its own that holds the database row lock
     * ({@code SELECT ... FOR UPDATE} on the user's federated-identity row) from the read, across
     * the core's upstream call, to the write of the new token set; it commits before the
     * cluster lock is released. The cluster lock only keeps waiters from each holding a
     * database connection; correctness rests on the row lock: a second holder (a lock that
     * expired, a cluster that split) blocks until the first one committed and then reads the
     * token set it wrote, so a refresh token is never sent twice. Returns null when the row is gone.
     */
    private Held refreshUnderRowLock(String realmId, String userId, Endpoint endpoint, String method) {
        String alias = config.getAlias();
        SingleUseObjectProvider store = session.singleUseObjects();
        Map<String, String> kept = Kept.get(store, realmId, userId, alias);
        Answer[] got = new Answer[1];
        String[] row = new String[1];
        String[] dbRow = new String[1];
        String[] toWrite = new String[1];
        String[] link = new String[2];
        try {
            KeycloakModelUtils.runJobInTransaction(session.getKeycloakSessionFactory(), s -> {
                RealmModel r = s.realms().getRealm(realmId);
                if (r == null) {
                    return;
                }
                s.getContext().setRealm(r);
                StoredRow.Row locked = StoredRow.lockAndRead(s, userId, alias);
                if (locked == null || locked.token() == null || locked.token().isBlank()) {
                    return;
                }
                dbRow[0] = fingerprint(locked.token());
                link[0] = locked.federatedUserId();
                link[1] = locked.federatedUsername();
                // A token set refreshed earlier whose write the database refused: newer than the
                // row, so the refresh starts from it (its refresh token is the live one).
                String current = Kept.matching(kept, dbRow[0]) ? kept.get(Kept.STORE) : locked.token();
                row[0] = fingerprint(current);
                Answer answer = callCore("retrieve", current, endpoint, method);
                got[0] = answer;
                toWrite[0] = answer.store() != null ? answer.store() : (current.equals(locked.token()) ? null : current);
                if (toWrite[0] != null) {
                    UserModel u = s.users().getUserById(r, userId);
                    if (u == null) {
                        LOG.warnf("fresh-token: user %s vanished before the refreshed token of IdP '%s' was stored", userId, alias);
                        toWrite[0] = null;
                        return;
                    }
                    // Keycloak's own update: writes the row we hold locked and invalidates the
                    // user in every node's cache when the transaction commits. The model is a new
                    // object on purpose: never call setToken on a model from s.users() (or on the
                    // `identity` Keycloak passed in). Keycloak's user cache hands out its cached
                    // model itself, the same object concurrent requests on this node hold, and
                    // Keycloak's V1 token endpoint writes `identity` back at the end of its request
                    // when its token changed: a request finishing late would store an outdated
                    // token set over a newer one (a spent refresh token; seen in the cluster test).
                    s.users().updateFederatedIdentity(r, u, new FederatedIdentityModel(alias, link[0], link[1], toWrite[0]));
                }
            });
            if (kept != null && (toWrite[0] != null || !Kept.matching(kept, dbRow[0]))) {
                Kept.remove(store, realmId, userId, alias); // written now, or void (the row changed)
                if (toWrite[0] != null && Kept.matching(kept, dbRow[0])) {
                    LOG.infof("fresh-token: IdP '%s', user %s: the kept token set is stored now", alias, userId);
                }
            }
        } catch (RuntimeException e) {
            if (got[0] == null) {
                return new Held(storageUnavailableAnswer(e), null);
            }
            if (toWrite[0] != null) {
                // The IdP answered (or a kept set is being written) but the commit failed: the row
                // still holds the old, possibly spent refresh token. Write again; until that lands
                // keep the new set where the next holder and the waiters find it.
                got[0] = persistAfterRefusal(realmId, userId, dbRow[0], toWrite[0], link, e, got[0]);
            }
        }
        return got[0] == null ? null : new Held(got[0], row[0]);
    }

    /** Write attempts after the database refused the first one (each in a new transaction). */
    static final int WRITE_RETRIES = 3;
    static final long WRITE_BACKOFF_MS = 100;

    /**
     * The write of a refreshed token set was refused: try again a few times (short backoff,
     * a new transaction each, the row locked and still the one we refreshed from). If none
     * lands, keep the set (the at-rest form: sealed when encryption is on) in the cluster-wide
     * single-use store under {@link Kept}, where the next refresh and the waiters take it
     * instead of the stale row. Returns the caller's answer, with the {@code token_not_persisted}
     * warning when the set could be neither stored nor kept.
     */
    private Answer persistAfterRefusal(String realmId, String userId, String dbRow, String value, String[] link,
            RuntimeException first, Answer answer) {
        String alias = config.getAlias();
        RuntimeException last = first;
        for (int attempt = 1; attempt <= WRITE_RETRIES; attempt++) {
            boolean[] superseded = new boolean[1];
            try {
                sleep(WRITE_BACKOFF_MS << (attempt - 1));
                KeycloakModelUtils.runJobInTransaction(session.getKeycloakSessionFactory(), s -> {
                    RealmModel r = s.realms().getRealm(realmId);
                    if (r == null) {
                        superseded[0] = true;
                        return;
                    }
                    s.getContext().setRealm(r);
                    StoredRow.Row locked = StoredRow.lockAndRead(s, userId, alias);
                    UserModel u = s.users().getUserById(r, userId);
                    if (locked == null || u == null || locked.token() == null || value.equals(locked.token())) {
                        superseded[0] = true; // gone, or the earlier commit did land after all
                        return;
                    }
                    if (!dbRow.equals(fingerprint(locked.token()))) {
                        superseded[0] = true; // a new sign-in (or an admin) replaced the row: it wins
                        return;
                    }
                    s.users().updateFederatedIdentity(r, u, new FederatedIdentityModel(alias, link[0], link[1], value));
                });
                Kept.remove(session.singleUseObjects(), realmId, userId, alias);
                LOG.infof("fresh-token: IdP '%s', user %s: the refreshed token set was stored on write attempt %d%s", alias,
                        userId, attempt + 1, superseded[0] ? " (the row had changed meanwhile; nothing written)" : "");
                return answer;
            } catch (RuntimeException e) {
                last = e;
            }
        }
        try {
            Kept.put(session.singleUseObjects(), realmId, userId, alias, dbRow, value);
            LOG.warnf("fresh-token: IdP '%s', user %s: the database refused the refreshed token set %d times (%s); it is kept "
                    + "in the cluster's single-use store (up to %d s) and used instead of the stale row until a write succeeds",
                    alias, userId, WRITE_RETRIES + 1, rootMessage(last), Kept.TTL_S);
            return answer;
        } catch (RuntimeException e) {
            Kept.remove(session.singleUseObjects(), realmId, userId, alias); // an older kept set is spent now
            LOG.errorf("fresh-token: IdP '%s', user %s: the refreshed token set could not be stored (%s) nor kept (%s); "
                    + "the next refresh sends the old refresh token, which an IdP with strict rotation refuses "
                    + "(the user then signs in again)", alias, userId, rootMessage(last), e.getClass().getName());
            return answer.withWarning(NOT_PERSISTED);
        }
    }

    /** The warning code on an answer whose new token set could be neither stored nor kept (README, Concurrency and safety). */
    static final String NOT_PERSISTED = "token_not_persisted";

    private Outcome storageUnavailable(RuntimeException e) {
        return respond(storageUnavailableAnswer(e));
    }

    /** The database failed under us: a documented retry_later (503), never a stale token. */
    private Answer storageUnavailableAnswer(RuntimeException e) {
        LOG.warnf("fresh-token: IdP '%s': the stored token could not be read or locked (%s: %s)", config.getAlias(),
                e.getClass().getSimpleName(), rootMessage(e));
        ObjectNode err = MAPPER.createObjectNode();
        err.put("code", "retry_later").put("status", 503).put("retry_after_s", 5).put("error_description",
                "Keycloak's database is not reachable right now; try again shortly.");
        return Answer.error(err);
    }

    /** A database failure (JDBC or JPA) anywhere in the cause chain. */
    static boolean isStorageFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof java.sql.SQLException || t instanceof jakarta.persistence.PersistenceException) {
                return true;
            }
        }
        return false;
    }

    /** The innermost cause's class name only: database messages can quote SQL parameters. */
    private static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t.getClass().getName();
    }

    /** The core's answer, parsed. */
    record Answer(JsonNode ok, JsonNode err, String raw) {
        static Answer parse(String raw) {
            try {
                JsonNode root = MAPPER.readTree(raw);
                JsonNode ok = root.get("ok");
                JsonNode err = root.get("err");
                if (ok == null && err == null) {
                    return internal("The fresh-token core gave an answer without ok or err.");
                }
                return new Answer(ok, err, raw);
            } catch (Exception e) {
                return internal("The fresh-token core gave an unreadable answer.");
            }
        }

        static Answer internal(String description) {
            ObjectNode err = MAPPER.createObjectNode();
            err.put("code", "internal_error").put("status", 500).put("error_description", description);
            return error(err);
        }

        /** An err answer of ours, in the core's shape ({@code {"err": {...}}}). */
        static Answer error(ObjectNode err) {
            ObjectNode root = MAPPER.createObjectNode();
            root.set("err", err);
            return new Answer(null, err, root.toString());
        }

        public boolean isError() {
            return ok == null;
        }

        String action() {
            return ok == null ? null : ok.path("action").asText(null);
        }

        /** What to persist; on an err only when the core refreshed something on the way (CONTRACT.md). */
        String store() {
            JsonNode s = body() == null ? null : body().get("store");
            return s != null && s.isTextual() ? s.asText() : null;
        }

        JsonNode body() {
            return ok != null ? ok : err;
        }

        /** The same answer with {@code "warning": code} in the app's token response (ok answers only). */
        Answer withWarning(String code) {
            if (ok instanceof ObjectNode o && o.get("response") instanceof ObjectNode response) {
                response.put("warning", code);
                ObjectNode root = MAPPER.createObjectNode();
                root.set("ok", o);
                return new Answer(o, null, root.toString());
            }
            return this;
        }
    }

    private Answer callCore(String op, String stored, Endpoint endpoint, String method) {
        return callCore(op, stored, endpoint, method, config.minValiditySeconds());
    }

    /** {@code minValidity}: the policy's min_validity_s (the IdP's setting, or 0 for "still valid at all"). */
    private Answer callCore(String op, String stored, Endpoint endpoint, String method, int minValidity) {
        String request;
        try {
            request = buildRequest(op, stored, endpoint, method, minValidity);
        } catch (Assertions.KeyFileRefused e) {
            return keyFileRefused(e);
        }
        return send(request);
    }

    /** A key or certificate file outside the operator's key directory (or key files off): no network call. */
    private Answer keyFileRefused(Assertions.KeyFileRefused e) {
        LOG.warnf("fresh-token: IdP '%s': certificate assertion files refused (key file '%s', certificate file '%s'): %s",
                config.getAlias(), config.assertionKeyFile(), config.assertionCertFile(), e.getMessage());
        ObjectNode err = MAPPER.createObjectNode();
        err.put("code", "idp_misconfigured").put("status", 502).put("error_description", e.getMessage());
        return Answer.error(err);
    }

    /** One native call; an unavailable core or a caught panic becomes an err answer like any other. */
    private Answer send(String requestJson) {
        String alias = config.getAlias();
        String raw;
        try {
            raw = NativeLibrary.call(requestJson);
        } catch (NativeUnavailableException e) {
            ObjectNode err = MAPPER.createObjectNode();
            err.put("code", "native_unavailable").put("status", 503).put("error_description",
                    "The fresh-token native core is not available on this Keycloak node; see the provider's operational info and the server log.");
            ObjectNode root = MAPPER.createObjectNode();
            root.set("err", err);
            return new Answer(null, err, root.toString());
        } catch (RuntimeException e) {
            // A panic inside the core arrives here; its message carries no payload data.
            LOG.errorf("fresh-token: native core failed for IdP '%s': %s", alias, e.getMessage());
            return Answer.internal("The fresh-token core failed unexpectedly; see the server log.");
        }
        Answer a = Answer.parse(raw);
        logDiag(alias, a.body());
        return a;
    }

    private Outcome respond(Answer a) {
        lastAnswer = a;
        String alias = config.getAlias();
        if (!a.isError()) {
            if (LOG.isDebugEnabled()) {
                LOG.debugf("fresh-token: IdP '%s' %s, upstream %s ms", alias, a.action(), a.ok().path("upstream_ms").asText("-"));
            }
            return new Outcome(Response.ok(a.ok().path("response").toString(), MediaType.APPLICATION_JSON_TYPE).build(), null);
        }
        JsonNode err = a.err();
        String code = err.path("code").asText("internal_error");
        int status = err.path("status").asInt(500);
        JsonNode upstream = err.get("upstream");
        if (upstream != null && upstream.isNull()) {
            upstream = null;
        }
        LOG.warnf("fresh-token: IdP '%s': %s (upstream status %s, error %s, codes %s)", alias, code,
                upstream == null ? "-" : upstream.path("status").asText("-"),
                upstream == null ? "-" : upstream.path("error").asText("-"),
                upstream == null ? "-" : upstream.path("error_codes").toString());
        String description = err.path("error_description").asText("");
        if ("reauth_required".equals(code)) {
            return reauth(description, upstream);
        }
        JsonNode retry = err.get("retry_after_s");
        return error(code, status, description, upstream, retry != null && retry.canConvertToLong() ? retry.asLong() : null);
    }

    private String buildRequest(String op, String stored, Endpoint endpoint, String method, int minValidity) {
        ObjectNode req = MAPPER.createObjectNode();
        req.put("v", 1);
        req.put("op", op);
        req.put("now", Time.currentTime());
        req.put("stored", stored);
        req.set("binding", Storage.binding(rowRealmId, rowUserId, config.getAlias(), subject));
        ObjectNode policy = req.putObject("policy");
        policy.put("min_validity_s", minValidity);
        policy.put("include_refresh_token", endpoint == Endpoint.V1 && config.includeRefreshToken());
        policy.put("include_id_token", endpoint == Endpoint.V1);
        if (resourceScope != null) {
            ObjectNode resource = req.putObject("resource");
            resource.put("scope", resourceScope);
            resource.put("refresh_scope", config.resourceRefreshScope(resourceScope));
        }
        if (oboScope != null) {
            ObjectNode obo = req.putObject("obo");
            obo.put("client_id", config.oboClientId());
            obo.put("client_secret", resolveSecret(IdpSecrets.read(session.getContext().getRealm(), config, FreshTokenConfig.OBO_CLIENT_SECRET)));
            obo.put("client_auth", "client_secret_post");
            obo.put("assertion_scope", config.oboAssertionScope());
            obo.put("scope", oboScope);
            obo.put("mode", config instanceof EntraConfig ? "entra_obo" : "token_exchange");
        }
        if ("retrieve".equals(op)) {
            req.set("idp", idpBlock(method));
        }
        return req.toString();
    }

    private ObjectNode idpBlock(String method) {
        ObjectNode idp = MAPPER.createObjectNode();
        idp.put("token_url", config.getTokenUrl());
        idp.put("client_id", config.getClientId());
        idp.put("client_auth", method == null ? "client_secret_post" : method);
        RealmModel ctxRealm = session.getContext().getRealm();
        idp.put("realm_id", ctxRealm == null ? "" : ctxRealm.getId()); // app_token cache key
        idp.put("idp_id", config.getInternalId() == null ? "" : config.getInternalId());
        // Entra accepts a refresh token again within its lifetime; a generic IdP may rotate
        // strictly: the core then never repeats a refresh that may have been processed.
        idp.put("kind", config instanceof EntraConfig ? "entra" : "oidc");
        if ("private_key_jwt".equals(method)) {
            idp.set("assertion", Assertions.forIdp(session, config));
        } else {
            idp.put("client_secret", clientSecret());
        }
        idp.put("refresh_scope", config.refreshScope());
        idp.put("connect_timeout_ms", config.connectTimeoutMs());
        idp.put("timeout_ms", config.timeoutMs());
        idp.put("max_attempts", config.maxAttempts());
        idp.put("max_body_bytes", config.maxResponseBytes());
        Outbound.init(session);
        Outbound.addTrust(idp);
        String proxy = Outbound.proxyFor(config.getTokenUrl());
        if (proxy != null) {
            idp.put("proxy_url", proxy);
        }
        return idp;
    }

    private String clientSecret() {
        return resolveSecret(config.getClientSecret());
    }

    /** A plain secret, or a vault reference such as ${vault.key} resolved through Keycloak's vault. */
    private String resolveSecret(String raw) {
        if (raw == null || raw.isEmpty()) {
            return "";
        }
        try (VaultStringSecret secret = session.vault().getStringSecret(raw)) {
            return secret.get().orElse(raw);
        }
    }

    private Outcome reauth(String description, JsonNode upstream) {
        Outcome o = error("reauth_required", 400, description, upstream, null);
        String link = accountLinkUrl();
        if (link == null) {
            return o;
        }
        try {
            ObjectNode body = (ObjectNode) MAPPER.readTree((String) o.response().getEntity());
            body.put("account-link-url", link);
            return new Outcome(Response.status(400).entity(body.toString()).type(MediaType.APPLICATION_JSON_TYPE).build(), o.errorCode());
        } catch (Exception e) {
            return o;
        }
    }

    /**
     * Where the app sends the user to link the IdP again: Keycloak's application-initiated
     * action {@code kc_action=idp_link:<alias>} (Keycloak 26.3+) for the calling client. The
     * app appends its own {@code redirect_uri} and {@code state}, or passes {@code redirect_uri}
     * on the token call to have it included.
     */
    private String accountLinkUrl() {
        ClientModel client = session.getContext().getClient();
        RealmModel realm = session.getContext().getRealm();
        if (client == null || realm == null || session.getContext().getUri() == null) {
            return null;
        }
        UriBuilder b = UriBuilder.fromUri(session.getContext().getUri().getBaseUri())
                .path("realms").path(realm.getName()).path("protocol/openid-connect/auth")
                .queryParam("client_id", client.getClientId())
                .queryParam("response_type", "code")
                .queryParam("scope", "openid")
                .queryParam("kc_action", "idp_link:" + config.getAlias());
        String redirect = session.getContext().getUri().getQueryParameters().getFirst("redirect_uri");
        if (redirect != null && client.getRedirectUris().stream().anyMatch(p -> RedirectMatch.matches(p, redirect))) {
            b.queryParam("redirect_uri", redirect);
        }
        return b.build().toString();
    }

    private static void logDiag(String alias, JsonNode body) {
        if (!LOG.isDebugEnabled() || body == null) {
            return;
        }
        Iterator<JsonNode> it = body.path("diag").elements();
        while (it.hasNext()) {
            LOG.debugf("fresh-token core [%s]: %s", alias, it.next().asText());
        }
    }

    private static Outcome error(String code, int status, String description, JsonNode upstream, Long retryAfter) {
        ObjectNode body = MAPPER.createObjectNode();
        body.put("error", code);
        body.put("error_description", description);
        if (upstream != null) {
            body.set("upstream", upstream);
        }
        if (retryAfter != null) {
            body.put("retry_after_s", retryAfter);
        }
        Response.ResponseBuilder b = Response.status(status).entity(body.toString()).type(MediaType.APPLICATION_JSON_TYPE);
        if (retryAfter != null) {
            b.header("Retry-After", Long.toString(retryAfter));
        }
        return new Outcome(b.build(), code);
    }

    static String fingerprint(String stored) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(stored.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(d);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for a concurrent token refresh");
        }
    }

    public static Response exchangeRefused(EventBuilder event, String alias) {
        if (event != null) {
            event.detail("reason", "token exchange of stored tokens is not supported for fresh-token IdPs");
            event.error(Errors.NOT_ALLOWED);
        }
        ObjectNode body = MAPPER.createObjectNode();
        body.put("error", "unsupported_token_type");
        body.put("error_description", "Token exchange of the stored token of identity provider '" + alias
                + "' is not supported; use GET /realms/{realm}/broker/" + alias + "/token");
        return Response.status(400).entity(body.toString()).type(MediaType.APPLICATION_JSON_TYPE).build();
    }
}
