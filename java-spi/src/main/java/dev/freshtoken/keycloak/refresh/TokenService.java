package dev.freshtoken.keycloak.refresh;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.jboss.logging.Logger;
import org.keycloak.events.Errors;
import org.keycloak.events.EventBuilder;
import org.keycloak.models.ClientModel;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;

import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.idp.FreshTokenIdentityProvider;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.CoreRequest;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.nativecore.ErrorReply;
import dev.freshtoken.keycloak.storage.Storage;
import dev.freshtoken.keycloak.telemetry.Telemetry;

/**
 * One token retrieval: ask the core whether the stored token can be served; if it must be
 * refreshed, take the cluster-wide lock for (realm, user, IdP) ({@link SingleFlight}), re-read the
 * row in a fresh transaction, let the core refresh, persist the new token set in a transaction of
 * our own and only then release the lock ({@link RowLockedRefresh}). Who may ask is decided by
 * {@link Access}; requests and answers are mapped by {@link CoreMapping}. Per request, what is
 * asked travels as an {@link Ask} value. Token values never reach a log line or an exception message here.
 */
public final class TokenService {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    /** Lock lifetime: longer than the longest refresh (deadline) plus persistence. */
    public static final int LOCK_TTL_S = 45;
    /** How long a failed refresh's outcome is shared with the callers that waited for it. */
    static final int FAILURE_TTL_S = 10;
    public static final long POLL_MS = 50;

    /** The warning code on an answer whose new token set could be neither stored nor kept (README, Concurrency and safety). */
    static final String NOT_PERSISTED = "token_not_persisted";

    public enum Endpoint { V1, V2 }

    /**
     * The app's answer as a value: HTTP status, JSON body, {@code Retry-After} (null: none) and,
     * for errors, our error code; {@code answer}: the core answer it came from (telemetry),
     * {@code askedIdp}: whether this call went to the IdP. {@link #response()} is the JAX-RS form.
     */
    public record Outcome(int status, String body, Long retryAfter, String errorCode, CoreAnswer answer, boolean askedIdp,
                          byte[] bodyBytes) {

        public Outcome(int status, String body, Long retryAfter, String errorCode, CoreAnswer answer, boolean askedIdp) {
            this(status, body, retryAfter, errorCode, answer, askedIdp, null);
        }

        /** The stored token served as it is: the core's body bytes, written as they are. */
        static Outcome served(byte[] body) {
            return new Outcome(200, null, null, null, null, false, body);
        }

        /** The body as text (the fresh path's bytes decoded; tests and diagnostics). */
        @Override
        public String body() {
            return body != null || bodyBytes == null ? body : new String(bodyBytes, StandardCharsets.UTF_8);
        }

        public boolean isError() {
            return errorCode != null;
        }

        public Response response() {
            Object entity = bodyBytes != null ? bodyBytes : body;
            Response.ResponseBuilder b = Response.status(status).entity(entity).type(MediaType.APPLICATION_JSON_TYPE);
            if (retryAfter != null) {
                b.header("Retry-After", Long.toString(retryAfter));
            }
            return b.build();
        }

        Outcome withAnswer(CoreAnswer a) {
            return new Outcome(status, body, retryAfter, errorCode, a, askedIdp, bodyBytes);
        }

        Outcome asked() {
            return new Outcome(status, body, retryAfter, errorCode, answer, true, bodyBytes);
        }

        @Override
        public String toString() {
            return "Outcome[status=" + status + ", error=" + errorCode + "]"; // the body may hold tokens
        }
    }

    private final KeycloakSession session;
    private final FreshTokenConfig config;
    private final Access access;
    private final CoreMapping mapping;
    private final SingleFlight flight;
    private final SingleFlight.Rows rows;
    private ClientModel callerClient;
    private UserModel callerUser;

    public TokenService(KeycloakSession session, FreshTokenIdentityProvider provider) {
        this(session, provider.freshConfig());
    }

    TokenService(KeycloakSession session, FreshTokenConfig config) {
        this(session, config, new CoreMapping(session, config), null);
    }

    /** {@code rows} null: the database ({@link RowLockedRefresh}); unit tests pass fakes. */
    TokenService(KeycloakSession session, FreshTokenConfig config, CoreMapping mapping, SingleFlight.Rows rows) {
        this.session = session;
        this.config = config;
        this.access = new Access(config);
        this.mapping = mapping;
        this.rows = rows != null ? rows : new RowLockedRefresh(session, config, mapping);
        this.flight = new SingleFlight(session, config, mapping, this.rows);
    }

    /** The caller of our own endpoints (obo, app-token), for their events. */
    public TokenService caller(ClientModel client, UserModel user) {
        this.callerClient = client;
        this.callerUser = user;
        return this;
    }

    /** The broker token endpoint (V1: Keycloak's, V2: ours with {@code scope}): the IdP's own token or one of a resource. */
    public Outcome retrieve(FederatedIdentityModel identity, UserModel userOrNull, Endpoint endpoint, String resourceScope) {
        String scope = resourceScope == null || resourceScope.isBlank() ? null : FreshTokenConfig.normaliseScope(resourceScope);
        Telemetry.Call telemetry = new Telemetry.Call(session, config.getAlias(), endpoint == Endpoint.V1 ? "broker_v1" : "broker_v2");
        telemetry.kind(scope == null ? Telemetry.Kind.IDP : Telemetry.Kind.RESOURCE, scope);
        try {
            return recorded(telemetry, doRetrieve(identity, userOrNull, endpoint, scope, null, telemetry));
        } catch (RuntimeException e) {
            if (RowLockedRefresh.isStorageFailure(e)) {
                return storageUnavailable(e); // not recorded, as before the split
            }
            LOG.errorf(e, "fresh-token: token retrieval for IdP '%s' failed unexpectedly", config.getAlias());
            return recorded(telemetry, CoreMapping.error(ErrorCode.INTERNAL_ERROR, "Token retrieval failed unexpectedly; see the server log.", null));
        }
    }

    /** On-behalf-of: the same single-flight path, with the core's {@code obo} request. */
    public Outcome obo(FederatedIdentityModel identity, UserModel user, String scope) {
        String s = Access.normalised(scope);
        Telemetry.Call telemetry = new Telemetry.Call(session, config.getAlias(), "obo");
        telemetry.kind(Telemetry.Kind.OBO, s.isEmpty() ? null : s);
        return recorded(telemetry, oboOutcome(identity, user, s, telemetry));
    }

    private Outcome oboOutcome(FederatedIdentityModel identity, UserModel user, String scope, Telemetry.Call telemetry) {
        Access.Refusal refused = access.obo(scope);
        if (refused != null) {
            return CoreMapping.refused(refused);
        }
        telemetry.resourceAllowed();
        try {
            return doRetrieve(identity, user, Endpoint.V2, null, scope, telemetry);
        } catch (RuntimeException e) {
            if (RowLockedRefresh.isStorageFailure(e)) {
                return storageUnavailable(e);
            }
            LOG.errorf(e, "fresh-token: on-behalf-of for IdP '%s' failed unexpectedly", config.getAlias());
            return CoreMapping.error(ErrorCode.INTERNAL_ERROR, "On-behalf-of failed unexpectedly; see the server log.", null);
        }
    }

    /** App-only: client_credentials through the core's per-node cache (single flight inside the core). */
    public Outcome appToken(String scope) {
        String s = Access.normalised(scope);
        Telemetry.Call telemetry = new Telemetry.Call(session, config.getAlias(), "app_token");
        telemetry.kind(Telemetry.Kind.APP, s.isEmpty() ? null : s);
        Access.Refusal refused = access.appScope(s);
        if (refused != null) {
            return recorded(telemetry, CoreMapping.refused(refused));
        }
        telemetry.resourceAllowed();
        // The core asks the IdP unless its cache serves (then no upstream_ms).
        return recorded(telemetry, mapping.respond(mapping.appToken(s, config.getClientAuthMethod())).asked());
    }

    private Outcome doRetrieve(FederatedIdentityModel identity, UserModel userOrNull, Endpoint endpoint, String resourceScope,
                               String oboScope, Telemetry.Call telemetry) {
        String alias = config.getAlias();
        RealmModel realm = session.getContext().getRealm();
        ClientModel client = session.getContext().getClient();
        Access.Refusal refused = access.client(client == null ? null : client.getClientId());
        if (refused == null) {
            refused = access.resourceScope(resourceScope);
        }
        if (refused != null) {
            return CoreMapping.refused(refused);
        }
        if (resourceScope != null) {
            telemetry.resourceAllowed();
        }
        // With storage keys the row's Keycloak user is part of what an encrypted value is bound to.
        UserModel rowUser = userOrNull != null || !Storage.configured() ? userOrNull
                : session.users().getUserByFederatedIdentity(realm, identity);
        Ask ask = new Ask(endpoint, resourceScope, oboScope,
                new CoreRequest.Binding(realm.getId(), rowUser == null ? "" : rowUser.getId(), alias, identity.getUserId()));
        String stored = identity.getToken();
        if (stored == null || stored.isBlank()) {
            return mapping.reauth("No token is stored for this user and identity provider; the user must sign in through '"
                    + alias + "' again.", null);
        }
        String method = config.getClientAuthMethod();
        refused = access.clientAuth(method);
        if (refused != null) {
            return CoreMapping.refused(refused);
        }
        // The fresh path needs nothing but the row Keycloak already read: no user lookup, no lock,
        // one native call on bytes whose answer is the body as it is written.
        byte[] served = mapping.serveFresh(ask, stored);
        if (served != null) {
            return Outcome.served(served);
        }
        CoreAnswer first = mapping.check(ask, stored);
        if (first.isError() || !"refresh".equals(first.action())) {
            return mapping.respond(first);
        }
        UserModel user = rowUser != null ? rowUser : session.users().getUserByFederatedIdentity(realm, identity);
        if (user == null) {
            return mapping.reauth("The user linked to this identity could not be found.", null);
        }
        return flight.refresh(ask.forUser(user.getId()), method, stored, telemetry);
    }

    /** Hands the outcome to Telemetry (event details, metrics) and returns it. */
    private Outcome recorded(Telemetry.Call telemetry, Outcome o) {
        telemetry.caller(callerClient, callerUser);
        telemetry.finish(o.errorCode(), o.answer(), o.askedIdp());
        return o;
    }

    private Outcome storageUnavailable(RuntimeException e) {
        return mapping.respond(rows.storageUnavailable(e));
    }

    /**
     * The cluster-wide refresh lock of (realm, user, IdP) in Keycloak's single-use store; the admin
     * clear and the storage conversion take the same lock so they never race a refresh.
     */
    public static String lockKey(String realmId, String userId, String alias) {
        return "fresh-token:lock:" + realmId + ":" + userId + ":" + alias;
    }

    static String fingerprint(String stored) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(stored.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(d);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static void sleep(long ms) {
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
        return ErrorReply.of(ErrorCode.UNSUPPORTED_TOKEN_TYPE, "Token exchange of the stored token of identity provider '" + alias
                + "' is not supported; use GET /realms/{realm}/broker/" + alias + "/token");
    }
}
