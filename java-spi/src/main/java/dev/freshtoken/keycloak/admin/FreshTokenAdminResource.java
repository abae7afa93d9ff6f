package dev.freshtoken.keycloak.admin;

import java.time.Instant;

import jakarta.ws.rs.DELETE;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.jboss.logging.Logger;
import org.keycloak.common.util.Time;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.models.utils.KeycloakModelUtils;
import org.keycloak.services.resources.admin.AdminEventBuilder;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;

import dev.freshtoken.keycloak.idp.AbstractFreshTokenFactory;
import dev.freshtoken.keycloak.nativecore.Core;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.CoreRequest;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.nativecore.ErrorReply;
import dev.freshtoken.keycloak.refresh.TokenService;
import dev.freshtoken.keycloak.storage.Storage;

/**
 * Admin REST API {@code /admin/realms/{realm}/fresh-token}: per user, whether a token is stored
 * for each of our IdPs the user is linked to, until when the access token is valid, when the
 * extension last refreshed it; and clearing the stored token (the link stays). Never a token
 * value. Authorized with Keycloak's admin permissions: view-users (GET), manage-users (DELETE).
 */
public class FreshTokenAdminResource {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");
    private static final ObjectMapper MAPPER = new ObjectMapper();
    /** How long a clear waits for a refresh in progress (the refresh lock) before answering 409. */
    static final long CLEAR_WAIT_MS = 15_000;

    private final KeycloakSession session;
    private final RealmModel realm;
    private final AdminPermissionEvaluator auth;
    private final AdminEventBuilder adminEvent;

    FreshTokenAdminResource(KeycloakSession session, RealmModel realm, AdminPermissionEvaluator auth, AdminEventBuilder adminEvent) {
        this.session = session;
        this.realm = realm;
        this.auth = auth;
        this.adminEvent = adminEvent;
    }

    /** Status of the stored token of each fresh-token IdP the user is linked to. */
    @GET
    @Path("users/{userId}")
    @Produces(MediaType.APPLICATION_JSON)
    public Response status(@PathParam("userId") String userId) {
        UserModel user = user(userId);
        if (user == null) {
            return notFound("User not found.");
        }
        auth.users().requireView(user);
        ObjectNode body = MAPPER.createObjectNode();
        body.put("userId", user.getId());
        body.put("username", user.getUsername());
        long now = Time.currentTime();
        body.put("now", now);
        ArrayNode idps = body.putArray("identityProviders");
        linkStatuses(session, realm, user, now).forEach(idps::add);
        return Response.ok(body.toString(), MediaType.APPLICATION_JSON_TYPE).build();
    }

    /** Clears the stored token of one link; the user stays linked and the next sign-in stores a new one. */
    @DELETE
    @Path("users/{userId}/idps/{alias}/token")
    @Produces(MediaType.APPLICATION_JSON)
    public Response clear(@PathParam("userId") String userId, @PathParam("alias") String alias) {
        UserModel user = user(userId);
        if (user == null) {
            return notFound("User not found.");
        }
        auth.users().requireManage(user);
        IdentityProviderModel idp = session.identityProviders().getByAlias(alias);
        if (idp == null || !AbstractFreshTokenFactory.PROVIDER_IDS.contains(idp.getProviderId())) {
            return notFound("No identity provider '" + alias + "' of a fresh-token type in this realm.");
        }
        if (session.users().getFederatedIdentity(realm, user, alias) == null) {
            return notFound("The user is not linked to identity provider '" + alias + "'.");
        }
        ClearOutcome outcome = clearStoredToken(session, realm, user, alias);
        if (outcome == ClearOutcome.BUSY) {
            return ErrorReply.of(ErrorCode.CONFLICT, "A refresh of this token is in progress; try again shortly.");
        }
        if (outcome == ClearOutcome.INTERRUPTED) {
            return ErrorReply.of(ErrorCode.RETRY_LATER, null);
        }
        boolean cleared = outcome == ClearOutcome.CLEARED;
        LOG.infof("fresh-token: admin cleared the stored token of user %s for IdP '%s' (%s)", user.getId(), alias,
                cleared ? "a token was stored" : "none was stored");
        adminEvent.resource(ResourceType.USER).operation(OperationType.DELETE)
                .resourcePath(session.getContext().getUri()).success();
        return Response.noContent().build();
    }

    enum ClearOutcome { CLEARED, NONE_STORED, BUSY, INTERRUPTED }

    /**
     * Empties the stored token of one link under TokenService's refresh lock (a refresh in flight
     * must not write the token back after the clear); the link stays. Waits up to
     * {@link #CLEAR_WAIT_MS} for a refresh in progress, else {@link ClearOutcome#BUSY}.
     */
    static ClearOutcome clearStoredToken(KeycloakSession session, RealmModel realm, UserModel user, String alias) {
        String lockKey = TokenService.lockKey(realm.getId(), user.getId(), alias);
        long until = System.currentTimeMillis() + CLEAR_WAIT_MS;
        while (!session.singleUseObjects().putIfAbsent(lockKey, TokenService.LOCK_TTL_S)) {
            if (System.currentTimeMillis() > until) {
                return ClearOutcome.BUSY;
            }
            try {
                Thread.sleep(TokenService.POLL_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return ClearOutcome.INTERRUPTED;
            }
        }
        try {
            String realmId = realm.getId();
            String uid = user.getId();
            boolean had = KeycloakModelUtils.runJobInTransactionWithResult(session.getKeycloakSessionFactory(), s -> {
                RealmModel r = s.realms().getRealm(realmId);
                s.getContext().setRealm(r);
                UserModel u = s.users().getUserById(r, uid);
                FederatedIdentityModel fi = u == null ? null : s.users().getFederatedIdentity(r, u, alias);
                if (fi == null) {
                    return false;
                }
                boolean stored = fi.getToken() != null && !fi.getToken().isBlank();
                // Empty, not null: for null Keycloak's V1 endpoint answers its own 404 before asking us;
                // empty reaches TokenService, which answers reauth_required with the account-link URL.
                fi.setToken("");
                s.users().updateFederatedIdentity(r, u, fi);
                return stored;
            });
            return had ? ClearOutcome.CLEARED : ClearOutcome.NONE_STORED;
        } finally {
            session.singleUseObjects().remove(lockKey);
        }
    }

    /** Status of each fresh-token IdP link of the user (never a token value). */
    static java.util.List<ObjectNode> linkStatuses(KeycloakSession session, RealmModel realm, UserModel user, long now) {
        java.util.List<ObjectNode> out = new java.util.ArrayList<>();
        session.users().getFederatedIdentitiesStream(realm, user).forEach(link -> {
            IdentityProviderModel idp = session.identityProviders().getByAlias(link.getIdentityProvider());
            if (idp != null && AbstractFreshTokenFactory.PROVIDER_IDS.contains(idp.getProviderId())) {
                out.add(idpStatus(idp, link, now, realm.getId(), user.getId()));
            }
        });
        return out;
    }

    static ObjectNode idpStatus(IdentityProviderModel idp, FederatedIdentityModel link, long now, String realmId, String userId) {
        ObjectNode o = MAPPER.createObjectNode();
        o.put("alias", idp.getAlias());
        o.put("providerId", idp.getProviderId());
        o.put("userIdAtIdp", link.getUserId());
        o.put("userNameAtIdp", link.getUserName());
        String stored = link.getToken();
        boolean has = stored != null && !stored.isBlank();
        o.put("tokenStored", has);
        if (!has) {
            return o;
        }
        CoreAnswer answer = Core.call(CoreRequest.inspect(now, stored,
                Storage.binding(realmId, userId, idp.getAlias(), link.getUserId()))); // opens encrypted rows (Storage)
        if (ErrorCode.NATIVE_UNAVAILABLE.code().equals(answer.code())) {
            o.put("problem", "native_unavailable: the fresh-token native core is not available on this node");
            return o;
        }
        JsonNode s = answer.isError() ? null : answer.ok().path("status");
        if (s == null || !s.isObject()) {
            o.put("usable", false);
            o.put("problem", (answer.isError() ? answer.code() : ErrorCode.INTERNAL_ERROR.code()) + ": " + answer.description());
            return o;
        }
        o.put("usable", s.path("has_access_token").asBoolean() || s.path("has_refresh_token").asBoolean());
        o.put("accessTokenStored", s.path("has_access_token").asBoolean());
        o.put("refreshTokenStored", s.path("has_refresh_token").asBoolean());
        o.put("idTokenStored", s.path("has_id_token").asBoolean());
        o.put("accessTokenValid", s.path("access_token_valid").asBoolean());
        epoch(o, "accessTokenExpiresAt", s.path("access_token_expires_at"));
        if (s.path("access_token_expires_in").canConvertToLong()) {
            o.put("accessTokenExpiresIn", s.path("access_token_expires_in").asLong());
        }
        epoch(o, "lastRefreshedAt", s.path("refreshed_at"));
        if (s.path("scope").isTextual()) {
            o.put("scope", s.path("scope").asText());
        }
        o.put("resourceTokens", s.path("resource_tokens").asInt());
        o.put("oboTokens", s.path("obo_tokens").asInt());
        return o;
    }

    /** Epoch seconds as {@code name} and ISO-8601 as {@code nameIso}; null when unknown. */
    private static void epoch(ObjectNode o, String name, JsonNode v) {
        if (v.canConvertToLong() && v.asLong() > 0) {
            o.put(name, v.asLong());
            o.put(name + "Iso", Instant.ofEpochSecond(v.asLong()).toString());
        } else {
            o.putNull(name);
        }
    }

    private UserModel user(String userId) {
        UserModel user = session.users().getUserById(realm, userId);
        if (user == null) {
            auth.users().requireQuery(); // no existence oracle for callers that may not list users
        }
        return user;
    }

    private static Response notFound(String description) {
        return ErrorReply.of(ErrorCode.NOT_FOUND, description);
    }
}
