package dev.freshtoken.keycloak.refresh;

import java.util.Set;

import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.ErrorCode;

/**
 * Who may read what, per IdP: the client allow-list, the scopes apps may request (per
 * resource, on-behalf-of, app-only) and the client authentication methods this provider
 * sends. Each check answers null (allowed) or the refusal's description; the caller maps it
 * to {@code forbidden} / {@code idp_misconfigured}. No Keycloak lookups: config only.
 */
final class Access {

    /**
     * The client authentication methods of the IdP's own client this provider type supports. This
     * is the one place that decides; the core's grant building (grant.rs) accepts the same set.
     */
    static final Set<String> SUPPORTED_AUTH = Set.of("client_secret_post", "client_secret_basic", "private_key_jwt");

    /** A refusal: the error code and the description for the app. */
    record Refusal(ErrorCode code, String description) {
    }

    private final FreshTokenConfig config;

    Access(FreshTokenConfig config) {
        this.config = config;
    }

    /** The IdP's 'Clients allowed to read tokens'; a request without a client (internal) passes. */
    Refusal client(String clientIdOrNull) {
        if (clientIdOrNull == null || config.clientMayReadTokens(clientIdOrNull)) {
            return null;
        }
        return new Refusal(ErrorCode.FORBIDDEN, "Client '" + clientIdOrNull + "' is not allowed to read tokens of identity provider '"
                + config.getAlias() + "' (see the IdP's 'Clients allowed to read tokens').");
    }

    /** The IdP's 'Scopes apps may request' for a token of another resource; null scope: the IdP's own token. */
    Refusal resourceScope(String scopeOrNull) {
        if (scopeOrNull == null || config.resourceScopeAllowed(scopeOrNull)) {
            return null;
        }
        return new Refusal(ErrorCode.FORBIDDEN, "Scope '" + scopeOrNull + "' is not among the scopes apps may request for identity provider '"
                + config.getAlias() + "' (see the IdP's 'Scopes apps may request').");
    }

    /** On-behalf-of needs the middle-tier client and a scope on its list. */
    Refusal obo(String scope) {
        if (config.oboClientId().isEmpty()) {
            return new Refusal(ErrorCode.IDP_MISCONFIGURED, "On-behalf-of is not configured for identity provider '"
                    + config.getAlias() + "' (set the middle-tier client ID).");
        }
        if (scope.isEmpty() || !config.oboScopeAllowed(scope)) {
            return new Refusal(ErrorCode.FORBIDDEN, "Scope '" + scope + "' is not among the on-behalf-of scopes apps may request for '"
                    + config.getAlias() + "'.");
        }
        return null;
    }

    /** App-only tokens: a scope on the IdP's app-only list. */
    Refusal appScope(String scope) {
        if (scope.isEmpty() || !config.appTokenScopeAllowed(scope)) {
            return new Refusal(ErrorCode.FORBIDDEN, "Scope '" + scope + "' is not among the app-only scopes of '" + config.getAlias() + "'.");
        }
        return null;
    }

    /** The IdP's client authentication method; null (unset) means client_secret_post. */
    Refusal clientAuth(String method) {
        if (method == null || SUPPORTED_AUTH.contains(method)) {
            return null;
        }
        return new Refusal(ErrorCode.IDP_MISCONFIGURED, "Client authentication method '" + method
                + "' is not supported by this provider type; use client_secret_post, client_secret_basic or private_key_jwt.");
    }

    /** A requested scope in its normal form ("" when none). */
    static String normalised(String scope) {
        return scope == null ? "" : FreshTokenConfig.normaliseScope(scope);
    }
}
