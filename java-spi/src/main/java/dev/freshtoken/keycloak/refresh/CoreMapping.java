package dev.freshtoken.keycloak.refresh;

import java.util.function.Function;

import jakarta.ws.rs.core.UriBuilder;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.jboss.logging.Logger;
import org.keycloak.common.util.Time;
import org.keycloak.models.ClientModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.vault.VaultStringSecret;

import dev.freshtoken.keycloak.endpoint.RedirectMatch;
import dev.freshtoken.keycloak.idp.Assertions;
import dev.freshtoken.keycloak.idp.EntraConfig;
import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.Core;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.CoreRequest;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.nativecore.ErrorReply;
import dev.freshtoken.keycloak.outbound.Outbound;
import dev.freshtoken.keycloak.secrets.IdpSecrets;

/**
 * The core request/answer mapping of one IdP: an {@link Ask} plus the IdP's settings become a
 * {@link CoreRequest}; a {@link CoreAnswer} becomes the app's HTTP answer ({@link TokenService.Outcome}),
 * with the account-link URL on {@code reauth_required}. Secrets are resolved here (vault) and go
 * only into the request; neither the request nor the answer is logged.
 */
final class CoreMapping {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    private final KeycloakSession session;
    private final FreshTokenConfig config;
    /** The native call ({@link Core#call}); a fake in unit tests. */
    private final Function<CoreRequest, CoreAnswer> core;
    /** The fresh-path call ({@link Core#serveFresh}); in unit tests a fake or none. */
    private final FastCore fast;

    /** {@link Core#serveFresh}'s shape: the app's body, or null (ask {@code check}). */
    interface FastCore {
        byte[] serveFresh(String stored, long now, int minValidity, boolean includeRefreshToken, boolean includeIdToken,
                          CoreRequest.Binding binding);
    }

    CoreMapping(KeycloakSession session, FreshTokenConfig config) {
        this(session, config, Core::call, Core::serveFresh);
    }

    /** Unit tests of the envelope path: every question goes through {@code core}. */
    CoreMapping(KeycloakSession session, FreshTokenConfig config, Function<CoreRequest, CoreAnswer> core) {
        this(session, config, core, (stored, now, min, rt, id, binding) -> null);
    }

    CoreMapping(KeycloakSession session, FreshTokenConfig config, Function<CoreRequest, CoreAnswer> core, FastCore fast) {
        this.session = session;
        this.config = config;
        this.core = core;
        this.fast = fast;
    }

    /**
     * The fresh path: the app's token response when the IdP's own stored token is served as it
     * is (one native call on bytes, no envelope), else null and the caller asks {@link #check}.
     * Resource and on-behalf-of questions always go the long way.
     */
    byte[] serveFresh(Ask ask, String stored) {
        if (ask.resourceScope() != null || ask.oboScope() != null) {
            return null;
        }
        boolean v1 = ask.endpoint() == TokenService.Endpoint.V1;
        return fast.serveFresh(stored, Time.currentTime(), config.minValiditySeconds(), v1 && config.includeRefreshToken(), v1,
                ask.binding());
    }

    /** {@code check} with the IdP's min validity. */
    CoreAnswer check(Ask ask, String stored) {
        return check(ask, stored, config.minValiditySeconds());
    }

    /** {@code check}; {@code minValidity}: the policy's min_validity_s (0: "still valid at all"). */
    CoreAnswer check(Ask ask, String stored, int minValidity) {
        return send(CoreRequest.check(Time.currentTime(), stored, ask.binding(), policy(ask, minValidity))
                .resource(resource(ask)).obo(obo(ask)));
    }

    /** {@code retrieve}: serve or refresh, with the IdP block (secret or assertion). */
    CoreAnswer retrieve(Ask ask, String stored, String method) {
        CoreRequest.Idp idp;
        try {
            idp = idpBlock(method);
        } catch (Assertions.KeyFileRefused e) {
            return keyFileRefused(e);
        }
        return send(CoreRequest.retrieve(Time.currentTime(), stored, ask.binding(), policy(ask, config.minValiditySeconds()), idp)
                .resource(resource(ask)).obo(obo(ask)));
    }

    /** {@code app_token} for a scope already allowed. */
    CoreAnswer appToken(String scope, String method) {
        CoreRequest.Idp idp;
        try {
            idp = idpBlock(method);
        } catch (Assertions.KeyFileRefused e) {
            return keyFileRefused(e);
        }
        return send(CoreRequest.appToken(Time.currentTime(), scope, config.minValiditySeconds(), idp));
    }

    private CoreRequest.Policy policy(Ask ask, int minValidity) {
        boolean v1 = ask.endpoint() == TokenService.Endpoint.V1;
        return new CoreRequest.Policy(minValidity, v1 && config.includeRefreshToken(), v1);
    }

    private CoreRequest.Resource resource(Ask ask) {
        return ask.resourceScope() == null ? null
                : new CoreRequest.Resource(ask.resourceScope(), config.resourceRefreshScope(ask.resourceScope()));
    }

    private CoreRequest.Obo obo(Ask ask) {
        if (ask.oboScope() == null) {
            return null;
        }
        String secret = resolveSecret(IdpSecrets.read(session.getContext().getRealm(), config, FreshTokenConfig.OBO_CLIENT_SECRET));
        return new CoreRequest.Obo(config.oboClientId(), secret, "client_secret_post", config.oboAssertionScope(), ask.oboScope(),
                config instanceof EntraConfig ? "entra_obo" : "token_exchange");
    }

    private CoreRequest.Idp idpBlock(String method) {
        RealmModel ctxRealm = session.getContext().getRealm();
        boolean withKey = "private_key_jwt".equals(method);
        CoreRequest.Assertion assertion = withKey ? Assertions.forIdp(session, config) : null;
        String secret = withKey ? null : resolveSecret(config.getClientSecret());
        Outbound.init(session);
        // Entra accepts a refresh token again within its lifetime; a generic IdP may rotate
        // strictly: the core then never repeats a refresh that may have been processed (kind).
        return new CoreRequest.Idp(config.getTokenUrl(), config.getClientId(), method == null ? "client_secret_post" : method,
                ctxRealm == null ? "" : ctxRealm.getId(), config.getInternalId() == null ? "" : config.getInternalId(),
                config instanceof EntraConfig ? "entra" : "oidc", secret, assertion, config.refreshScope(),
                config.connectTimeoutMs(), config.timeoutMs(), config.maxAttempts(), config.maxResponseBytes(),
                Outbound.trust(), Outbound.proxyFor(config.getTokenUrl()));
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

    /** A key or certificate file outside the operator's key directory (or key files off): no network call. */
    private CoreAnswer keyFileRefused(Assertions.KeyFileRefused e) {
        LOG.warnf("fresh-token: IdP '%s': certificate assertion files refused (key file '%s', certificate file '%s'): %s",
                config.getAlias(), config.assertionKeyFile(), config.assertionCertFile(), e.getMessage());
        return CoreAnswer.error(ErrorCode.IDP_MISCONFIGURED, e.getMessage());
    }

    private CoreAnswer send(CoreRequest request) {
        CoreAnswer a = core.apply(request);
        if (LOG.isDebugEnabled()) {
            for (String line : a.diag()) {
                LOG.debugf("fresh-token core [%s]: %s", config.getAlias(), line);
            }
        }
        return a;
    }

    /** The app's answer to a core answer: the token response, or the error envelope with the core's code and status. */
    TokenService.Outcome respond(CoreAnswer a) {
        String alias = config.getAlias();
        if (!a.isError()) {
            if (LOG.isDebugEnabled()) {
                LOG.debugf("fresh-token: IdP '%s' %s, upstream %s ms", alias, a.action(), a.ok().path("upstream_ms").asText("-"));
            }
            return new TokenService.Outcome(200, a.ok().path("response").toString(), null, null, a, false);
        }
        String code = a.code();
        JsonNode upstream = a.upstream();
        LOG.warnf("fresh-token: IdP '%s': %s (upstream status %s, error %s, codes %s)", alias, code,
                upstream == null ? "-" : upstream.path("status").asText("-"),
                upstream == null ? "-" : upstream.path("error").asText("-"),
                upstream == null ? "-" : upstream.path("error_codes").toString());
        if (ErrorCode.REAUTH_REQUIRED.code().equals(code)) {
            return reauth(a.description(), upstream).withAnswer(a);
        }
        Long retry = a.retryAfter();
        return new TokenService.Outcome(a.status(), ErrorReply.body(code, a.description(), upstream, retry).toString(), retry, code, a, false);
    }

    /** Our own refusal (no core answer involved). */
    static TokenService.Outcome error(ErrorCode code, String description, Long retryAfter) {
        return new TokenService.Outcome(code.status(), ErrorReply.body(code.code(), description, null, retryAfter).toString(), retryAfter,
                code.code(), null, false);
    }

    static TokenService.Outcome refused(Access.Refusal r) {
        return error(r.code(), r.description(), null);
    }

    /** {@code reauth_required} (400), with the account-link URL when there is a calling client. */
    TokenService.Outcome reauth(String description, JsonNode upstream) {
        ObjectNode body = ErrorReply.body(ErrorCode.REAUTH_REQUIRED.code(), description, upstream, null);
        String link = accountLinkUrl();
        if (link != null) {
            body.put("account-link-url", link);
        }
        return new TokenService.Outcome(ErrorCode.REAUTH_REQUIRED.status(), body.toString(), null, ErrorCode.REAUTH_REQUIRED.code(),
                null, false);
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
}
