package dev.freshtoken.keycloak.idp;

import java.net.URI;
import java.util.Locale;
import java.util.regex.Pattern;

import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.RealmModel;

import dev.freshtoken.keycloak.compat.Compat;

/**
 * Settings of an {@code entra-oidc} IdP: the tenant and authority host decide every endpoint,
 * which are derived and written into Keycloak's standard OIDC keys on save, so Keycloak's
 * own login code and the admin console's OIDC details page see ordinary values.
 */
public class EntraConfig extends FreshTokenConfig {

    private static final long serialVersionUID = 1L;

    public static final String TENANT = "entraTenant";
    public static final String AUTHORITY_HOST = "entraAuthorityHost";
    public static final String DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com";
    /** Multi-tenant apps (tenant common/organizations): tenant IDs whose users may sign in; empty: any. */
    public static final String ALLOWED_TENANTS = "entraAllowedTenants";

    private static final Pattern GUID = Pattern.compile("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$");
    private static final Pattern TENANT_SYNTAX = Pattern.compile("^[A-Za-z0-9.-]{1,253}$");

    public EntraConfig(IdentityProviderModel model) {
        super(model);
    }

    public EntraConfig() {
        super();
    }

    @Override
    protected boolean defaultAddOfflineAccess() {
        return true;
    }

    public String tenant() {
        String t = getConfig().get(TENANT);
        return t == null ? "" : t.trim();
    }

    public String authorityHost() {
        String h = getConfig().get(AUTHORITY_HOST);
        h = (h == null || h.isBlank()) ? DEFAULT_AUTHORITY_HOST : h.trim();
        while (h.endsWith("/")) {
            h = h.substring(0, h.length() - 1);
        }
        return h;
    }

    public boolean isMultiTenant() {
        String t = tenant().toLowerCase(Locale.ROOT);
        return t.equals("common") || t.equals("organizations");
    }

    public boolean tenantAllowed(String tid) {
        String raw = getConfig().get(ALLOWED_TENANTS);
        if (raw == null || raw.isBlank()) {
            return true;
        }
        for (String t : raw.split("[,\\s#]+")) {
            if (t.equalsIgnoreCase(tid)) {
                return true;
            }
        }
        return false;
    }

    /**
     * Why a token signed by this (multi-tenant) IdP is refused, or null: its {@code tid} must be
     * on the allow-list and its issuer the one Entra forms for that tenant. Only tenant IDs go
     * into the reason, never token content otherwise.
     */
    public String tenantRefusal(byte[] payload) {
        com.fasterxml.jackson.databind.JsonNode token;
        try {
            token = new com.fasterxml.jackson.databind.ObjectMapper().readTree(payload);
        } catch (java.io.IOException | RuntimeException e) {
            return "its claims cannot be read";
        }
        if (token == null || !token.isObject()) {
            return "its claims cannot be read";
        }
        com.fasterxml.jackson.databind.JsonNode tid = token.get("tid");
        com.fasterxml.jackson.databind.JsonNode iss = token.get("iss");
        if (tid == null || !tid.isTextual() || tid.asText().isBlank()) {
            return "it carries no tenant ID (tid)";
        }
        String t = tid.asText();
        if (!GUID.matcher(t).matches()) {
            return "its tenant ID is not a GUID";
        }
        if (iss == null || !iss.isTextual() || !issuerFor(t).equals(iss.asText())) {
            return "its issuer does not match its tenant " + t;
        }
        if (!tenantAllowed(t)) {
            return "tenant " + t + " is not on the IdP's allowed tenants";
        }
        return null;
    }

    /** The issuer Entra forms for a tenant: {authority host}/{tenant ID}/v2.0. */
    public String issuerFor(String tid) {
        return authorityHost() + "/" + tid.toLowerCase(Locale.ROOT) + "/v2.0";
    }

    /** Entra v2 refreshes need a scope; by default the login scopes (one resource). */
    @Override
    public String refreshScope() {
        String s = super.refreshScope();
        return s.isEmpty() ? effectiveLoginScope() : s;
    }

    @Override
    protected void applyCreationDefaults() {
        if (getConfig().get(INITIALIZED) == null) {
            String scope = getDefaultScope();
            if (scope == null || scope.isBlank()) {
                setDefaultScope("openid profile email");
            }
        }
        super.applyCreationDefaults();
    }

    @Override
    public void validate(RealmModel realm) {
        deriveEndpoints();
        super.validate(realm);
        requireOfflineAccessWhenStoringTokens();
    }

    /**
     * Entra ID issues a refresh token only when {@code offline_access} is requested; with
     * stored tokens a refresh is expected, so a login scope without it is a misconfiguration
     * caught on save rather than a {@code reauth_required} for every user an hour later.
     */
    void requireOfflineAccessWhenStoringTokens() {
        if (Compat.isStoreToken(this) && !(" " + effectiveLoginScope() + " ").contains(" offline_access ")) {
            throw new IllegalArgumentException("Tokens are stored and refreshed, but offline_access is not requested: "
                    + "Entra ID then issues no refresh token and every user must sign in again when the access token "
                    + "expires. Switch 'Request offline_access' on, or add offline_access to 'Scopes'.");
        }
    }

    /** Writes the Entra v2 endpoints for the tenant into Keycloak's OIDC keys. */
    public void deriveEndpoints() {
        String tenant = tenant();
        if (tenant.isEmpty()) {
            throw new IllegalArgumentException("Tenant is required: the directory (tenant) ID or a verified domain, "
                    + "or 'organizations' / 'common' for multi-tenant apps");
        }
        if (!TENANT_SYNTAX.matcher(tenant).matches()) {
            throw new IllegalArgumentException("Tenant must be a tenant ID (GUID) or a domain name");
        }
        String host = authorityHost();
        URI uri;
        try {
            uri = URI.create(host);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("Authority host is not a URL");
        }
        String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
        String hostName = uri.getHost() == null ? "" : uri.getHost().toLowerCase(Locale.ROOT);
        boolean loopback = hostName.equals("localhost") || hostName.startsWith("127.") || hostName.equals("[::1]");
        if (!scheme.equals("https") && !(scheme.equals("http") && loopback)) {
            throw new IllegalArgumentException("Authority host must be an https URL (plain http is accepted only on loopback, for tests)");
        }
        String base = host + "/" + tenant;
        setAuthorizationUrl(base + "/oauth2/v2.0/authorize");
        setTokenUrl(base + "/oauth2/v2.0/token");
        setJwksUrl(base + "/discovery/v2.0/keys");
        setLogoutUrl(base + "/oauth2/v2.0/logout");
        setValidateSignature(true);
        setUseJwksUrl(true);
        if (GUID.matcher(tenant).matches()) {
            // Entra forms the issuer from the authority host and the tenant ID.
            setIssuer(host + "/" + tenant.toLowerCase(Locale.ROOT) + "/v2.0");
        } else {
            // A domain name, 'common' or 'organizations': the issuer carries the tenant ID,
            // which is not known here; Keycloak then skips its issuer comparison.
            getConfig().remove("issuer");
        }
        // Entra has no userinfo endpoint for non-Graph audiences; the id_token carries the claims.
        setDisableUserInfoService(true);
    }
}
