package dev.freshtoken.keycloak;

import java.util.Iterator;

import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.jboss.logging.Logger;
import org.keycloak.common.util.Time;
import org.keycloak.events.EventBuilder;
import org.keycloak.events.Errors;
import org.keycloak.models.FederatedIdentityModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.models.utils.KeycloakModelUtils;
import org.keycloak.vault.VaultStringSecret;

import dev.freshtoken.keycloak.nativecore.NativeLibrary;
import dev.freshtoken.keycloak.nativecore.NativeUnavailableException;

/**
 * One token retrieval: build the request of docs/CONTRACT.md, call the core, persist what it
 * says to store (in a transaction of our own), turn the answer into an HTTP response.
 * Token values never reach a log line or an exception message here.
 */
final class TokenService {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");
    private static final ObjectMapper MAPPER = new ObjectMapper();

    enum Endpoint { V1, V2 }

    /** The HTTP answer and, for errors, our error code. */
    record Outcome(Response response, String errorCode) {
        boolean isError() {
            return errorCode != null;
        }
    }

    private final KeycloakSession session;
    private final FreshTokenIdentityProvider provider;
    private final FreshTokenConfig config;

    TokenService(KeycloakSession session, FreshTokenIdentityProvider provider) {
        this.session = session;
        this.provider = provider;
        this.config = provider.freshConfig();
    }

    Outcome retrieve(FederatedIdentityModel identity, UserModel userOrNull, Endpoint endpoint) {
        String alias = config.getAlias();
        RealmModel realm = session.getContext().getRealm();
        String stored = identity.getToken();
        if (stored == null || stored.isBlank()) {
            return error("reauth_required", 400, "No token is stored for this user and identity provider; "
                    + "the user must sign in through '" + alias + "' again.", null, null);
        }
        String method = config.getClientAuthMethod();
        if (method != null && !method.equals("client_secret_post") && !method.equals("client_secret_basic")) {
            return error("idp_misconfigured", 502, "Client authentication method '" + method
                    + "' is not supported by this provider type yet; use client_secret_post or client_secret_basic.", null, null);
        }

        String answer;
        try {
            answer = NativeLibrary.call(buildRequest(stored, endpoint, method));
        } catch (NativeUnavailableException e) {
            return error("native_unavailable", 503, "The fresh-token native core is not available on this Keycloak "
                    + "node; see the provider's operational info and the server log.", null, null);
        } catch (RuntimeException e) {
            // A panic inside the core arrives here; its message carries no payload data.
            LOG.errorf("fresh-token: native core failed for IdP '%s': %s", alias, e.getMessage());
            return error("internal_error", 500, "The fresh-token core failed unexpectedly; see the server log.", null, null);
        }

        JsonNode root;
        try {
            root = MAPPER.readTree(answer);
        } catch (Exception e) {
            LOG.errorf("fresh-token: unreadable answer from the native core for IdP '%s'", alias);
            return error("internal_error", 500, "The fresh-token core gave an unreadable answer.", null, null);
        }
        logDiag(alias, root);
        JsonNode ok = root.get("ok");
        if (ok != null) {
            JsonNode store = ok.get("store");
            if (store != null && store.isTextual()) {
                persist(realm, identity, userOrNull, store.asText());
            }
            if (LOG.isDebugEnabled()) {
                LOG.debugf("fresh-token: IdP '%s' %s, upstream %s ms", alias, ok.path("action").asText(),
                        ok.path("upstream_ms").asText("-"));
            }
            return new Outcome(Response.ok(ok.path("response").toString(), MediaType.APPLICATION_JSON_TYPE).build(), null);
        }
        JsonNode err = root.path("err");
        String code = err.path("code").asText("internal_error");
        int status = err.path("status").asInt(500);
        JsonNode upstream = err.get("upstream");
        LOG.warnf("fresh-token: IdP '%s': %s (upstream status %s, error %s, codes %s)", alias, code,
                upstream == null ? "-" : upstream.path("status").asText("-"),
                upstream == null ? "-" : upstream.path("error").asText("-"),
                upstream == null ? "-" : upstream.path("error_codes").toString());
        JsonNode retry = err.get("retry_after_s");
        return error(code, status, err.path("error_description").asText(""), upstream,
                retry != null && retry.canConvertToLong() ? retry.asLong() : null);
    }

    private String buildRequest(String stored, Endpoint endpoint, String method) {
        ObjectNode req = MAPPER.createObjectNode();
        req.put("v", 1);
        req.put("op", "retrieve");
        req.put("now", Time.currentTime());
        req.put("stored", stored);
        ObjectNode policy = req.putObject("policy");
        policy.put("min_validity_s", config.minValiditySeconds());
        policy.put("include_refresh_token", endpoint == Endpoint.V1 && config.includeRefreshToken());
        policy.put("include_id_token", endpoint == Endpoint.V1);
        ObjectNode idp = req.putObject("idp");
        idp.put("token_url", config.getTokenUrl());
        idp.put("client_id", config.getClientId());
        idp.put("client_secret", clientSecret());
        idp.put("client_auth", method == null ? "client_secret_post" : method);
        idp.put("refresh_scope", config.refreshScope());
        idp.put("connect_timeout_ms", config.connectTimeoutMs());
        idp.put("timeout_ms", config.timeoutMs());
        idp.put("max_attempts", config.maxAttempts());
        return req.toString();
    }

    private String clientSecret() {
        String raw = config.getClientSecret();
        if (raw == null) {
            return "";
        }
        try (VaultStringSecret secret = session.vault().getStringSecret(raw)) {
            return secret.get().orElse(raw);
        }
    }

    /** Writes the new token set in a transaction of its own, committed before we answer. */
    private void persist(RealmModel realm, FederatedIdentityModel identity, UserModel userOrNull, String newToken) {
        String alias = config.getAlias();
        UserModel user = userOrNull != null ? userOrNull : session.users().getUserByFederatedIdentity(realm, identity);
        if (user == null) {
            LOG.errorf("fresh-token: refreshed token for IdP '%s' could not be stored: user not found", alias);
            return;
        }
        String realmId = realm.getId();
        String userId = user.getId();
        try {
            KeycloakModelUtils.runJobInTransaction(session.getKeycloakSessionFactory(), s -> {
                RealmModel r = s.realms().getRealm(realmId);
                UserModel u = s.users().getUserById(r, userId);
                FederatedIdentityModel fresh = u == null ? null : s.users().getFederatedIdentity(r, u, alias);
                if (fresh == null) {
                    LOG.warnf("fresh-token: link of user %s to IdP '%s' vanished before the refreshed token was stored", userId, alias);
                    return;
                }
                fresh.setToken(newToken);
                s.users().updateFederatedIdentity(r, u, fresh);
            });
        } catch (RuntimeException e) {
            LOG.errorf("fresh-token: refreshed token for IdP '%s', user %s could not be stored: %s", alias, userId,
                    e.getClass().getSimpleName());
        }
    }

    private static void logDiag(String alias, JsonNode root) {
        if (!LOG.isDebugEnabled()) {
            return;
        }
        JsonNode body = root.has("ok") ? root.get("ok") : root.path("err");
        Iterator<JsonNode> it = body.path("diag").elements();
        while (it.hasNext()) {
            LOG.debugf("fresh-token core [%s]: %s", alias, it.next().asText());
        }
    }

    private static Outcome error(String code, int status, String description, JsonNode upstream, Long retryAfter) {
        ObjectNode body = MAPPER.createObjectNode();
        body.put("error", code);
        body.put("error_description", description);
        if (upstream != null && !upstream.isNull()) {
            body.set("upstream", upstream);
        }
        Response.ResponseBuilder b = Response.status(status).entity(body.toString()).type(MediaType.APPLICATION_JSON_TYPE);
        if (retryAfter != null) {
            body.put("retry_after_s", retryAfter);
            b.entity(body.toString()).header("Retry-After", Long.toString(retryAfter));
        }
        return new Outcome(b.build(), code);
    }

    static Response exchangeRefused(EventBuilder event, String alias) {
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
