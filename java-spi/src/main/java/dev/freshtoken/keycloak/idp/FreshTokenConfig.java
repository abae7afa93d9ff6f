package dev.freshtoken.keycloak.idp;

import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

import org.keycloak.broker.oidc.OIDCIdentityProviderConfig;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.RealmModel;

import dev.freshtoken.keycloak.compat.Compat;
import dev.freshtoken.keycloak.secrets.IdpSecrets;

/**
 * Settings of an identity provider of our types, kept in the IdP's config map. Where Keycloak
 * has the same concept we use Keycloak's key ({@code minValidityToken}), so an IdP keeps its
 * settings and admins' scripts keep working. Getters read the map directly instead of
 * Keycloak's typed getters, whose signatures change between 26.4 and 26.7.
 */
public class FreshTokenConfig extends OIDCIdentityProviderConfig {

    private static final long serialVersionUID = 1L;

    /** Keycloak's own key (IdentityProviderModel.MIN_VALIDITY_TOKEN), seconds. */
    public static final String MIN_VALIDITY = "minValidityToken";
    public static final int DEFAULT_MIN_VALIDITY_S = 60;
    public static final String ADD_OFFLINE_ACCESS = "addOfflineAccess";
    public static final String INCLUDE_REFRESH_TOKEN = "includeRefreshToken";
    public static final String REFRESH_SCOPE = "refreshScope";
    public static final String CONNECT_TIMEOUT_MS = "httpConnectTimeoutMs";
    public static final String TIMEOUT_MS = "httpTimeoutMs";
    public static final String MAX_ATTEMPTS = "refreshMaxAttempts";
    public static final String MAX_RESPONSE_BYTES = "httpMaxResponseBytes";
    public static final String ASSERTION_ALG = "clientAssertionAlg";
    public static final String ASSERTION_KEY_FILE = "clientAssertionKeyFile";
    public static final String ASSERTION_CERT_FILE = "clientAssertionCertFile";
    public static final String OBO_CLIENT_ID = "oboClientId";
    public static final String OBO_CLIENT_SECRET = "oboClientSecret";
    public static final String OBO_ASSERTION_SCOPE = "oboAssertionScope";
    public static final String OBO_SCOPES = "oboScopes";
    public static final String APP_TOKEN_SCOPES = "appTokenScopes";
    public static final String APP_TOKEN_ROLE = "appTokenRole";
    public static final String DEFAULT_APP_TOKEN_ROLE = "fresh-token-app-token";

    /** Scopes apps may request with {@code ?scope=} for a token of another resource; empty: none. */
    public static final String RESOURCE_SCOPES = "resourceScopes";
    /** Comma/space separated client IDs allowed to read this IdP's tokens; empty: any client Keycloak lets through. */
    public static final String ALLOWED_CLIENTS = "tokenReaderClients";
    /** Set once when the IdP is first saved, so creation-time defaults are applied only once. */
    public static final String INITIALIZED = "freshTokenInitialized";

    public FreshTokenConfig(IdentityProviderModel model) {
        super(model);
    }

    public FreshTokenConfig() {
        super();
    }

    public int minValiditySeconds() {
        return intSetting(MIN_VALIDITY, DEFAULT_MIN_VALIDITY_S, 0, 86_400);
    }

    public boolean addOfflineAccess() {
        return boolSetting(ADD_OFFLINE_ACCESS, defaultAddOfflineAccess());
    }

    protected boolean defaultAddOfflineAccess() {
        return false;
    }

    public boolean includeRefreshToken() {
        return boolSetting(INCLUDE_REFRESH_TOKEN, false);
    }

    public int connectTimeoutMs() {
        return intSetting(CONNECT_TIMEOUT_MS, 5_000, 100, 60_000);
    }

    public int timeoutMs() {
        return intSetting(TIMEOUT_MS, 10_000, 100, 120_000);
    }

    public int maxResponseBytes() {
        return intSetting(MAX_RESPONSE_BYTES, 1_048_576, 4_096, 16_777_216);
    }

    public int maxAttempts() {
        return intSetting(MAX_ATTEMPTS, 3, 1, 10);
    }

    public boolean clientMayReadTokens(String clientId) {
        String raw = getConfig().get(ALLOWED_CLIENTS);
        return raw == null || raw.isBlank() || listed(raw, "[,\\s#]+", clientId);
    }

    /** Whether apps may ask for a token for this scope (exact match of the normalised scope string). */
    public boolean resourceScopeAllowed(String scope) {
        String raw = getConfig().get(RESOURCE_SCOPES);
        return raw != null && !raw.isBlank() && listed(raw, "##|,|\\n", normaliseScope(scope));
    }

    /** PS256 (x5t#S256 header, the default) or RS256 (x5t header) for our certificate assertions. */
    public String assertionAlg() {
        String a = trimmed(ASSERTION_ALG);
        return a.equals("RS256") ? "RS256" : "PS256";
    }

    public String assertionKeyFile() {
        return trimmed(ASSERTION_KEY_FILE);
    }

    public String assertionCertFile() {
        return trimmed(ASSERTION_CERT_FILE);
    }

    public String oboClientId() {
        return trimmed(OBO_CLIENT_ID);
    }

    /**
     * The configured value: a vault reference, the mask {@code **********} (the secret is kept
     * in the realm's component for this IdP, see {@link IdpSecrets#read}), or a plain value
     * saved before secrets were masked.
     */
    public String oboClientSecret() {
        return trimmed(OBO_CLIENT_SECRET);
    }

    /** The middle tier's own API: the user token presented as the OBO assertion is for this scope. */
    public String oboAssertionScope() {
        String s = trimmed(OBO_ASSERTION_SCOPE);
        return s.isEmpty() && !oboClientId().isEmpty() ? "api://" + oboClientId() + "/.default" : s;
    }

    public boolean oboScopeAllowed(String scope) {
        String raw = getConfig().get(OBO_SCOPES);
        return raw != null && !raw.isBlank() && listed(raw, "##|,|\\n", normaliseScope(scope));
    }

    public boolean appTokenScopeAllowed(String scope) {
        String raw = getConfig().get(APP_TOKEN_SCOPES);
        return raw != null && !raw.isBlank() && listed(raw, "##|,|\\n", normaliseScope(scope));
    }

    public String appTokenRole() {
        String r = trimmed(APP_TOKEN_ROLE);
        return r.isEmpty() ? DEFAULT_APP_TOKEN_ROLE : r;
    }

    private String trimmed(String key) {
        String v = getConfig().get(key);
        return v == null ? "" : v.trim();
    }

    /** The scope sent with the refresh request for a resource token. */
    public String resourceRefreshScope(String scope) {
        String s = normaliseScope(scope);
        return addOfflineAccess() && !(" " + s + " ").contains(" offline_access ") ? s + " offline_access" : s;
    }

    public static String normaliseScope(String scope) {
        return scope == null ? "" : String.join(" ", scope.trim().split("\\s+"));
    }

    private static boolean listed(String raw, String separators, String value) {
        for (String c : raw.split(separators)) {
            if (normaliseScope(c).equals(value)) {
                return true;
            }
        }
        return false;
    }

    /** The scope sent on the authorization request: the default scope plus offline_access when enabled. */
    public String effectiveLoginScope() {
        Set<String> scopes = new LinkedHashSet<>();
        String configured = getDefaultScope();
        if (configured != null) {
            for (String s : configured.trim().split("\\s+")) {
                if (!s.isEmpty()) {
                    scopes.add(s);
                }
            }
        }
        if (!scopes.contains("openid")) {
            scopes.add("openid");
        }
        if (addOfflineAccess()) {
            scopes.add("offline_access");
        }
        return String.join(" ", scopes);
    }

    /**
     * The scope sent on refresh requests; empty means "omit scope" (RFC 6749 6: same scope as
     * originally granted).
     */
    public String refreshScope() {
        String s = getConfig().get(REFRESH_SCOPE);
        return s == null ? "" : s.trim();
    }

    /** Defaults applied when an IdP of our type is first saved. */
    protected void applyCreationDefaults() {
        Map<String, String> c = getConfig();
        if (c.get(INITIALIZED) != null) {
            return;
        }
        c.putIfAbsent(MIN_VALIDITY, Integer.toString(DEFAULT_MIN_VALIDITY_S));
        c.putIfAbsent(ADD_OFFLINE_ACCESS, Boolean.toString(defaultAddOfflineAccess()));
        c.putIfAbsent(INCLUDE_REFRESH_TOKEN, "false");
        Compat.setStoreToken(this, true);
        c.put(INITIALIZED, "true");
    }

    @Override
    public void validate(RealmModel realm) {
        applyCreationDefaults();
        checkInt(MIN_VALIDITY, 0, 86_400, "Minimum token validity");
        checkInt(CONNECT_TIMEOUT_MS, 100, 60_000, "HTTP connect timeout");
        checkInt(TIMEOUT_MS, 100, 120_000, "HTTP timeout");
        checkInt(MAX_ATTEMPTS, 1, 10, "Refresh attempts");
        checkInt(MAX_RESPONSE_BYTES, 4_096, 16_777_216, "Maximum IdP answer size");
        String realmName = realm == null ? null : realm.getName();
        Assertions.checkAtSave(realmName, assertionKeyFile(), "Certificate assertion: private key file");
        Assertions.checkAtSave(realmName, assertionCertFile(), "Certificate assertion: certificate file");
        super.validate(realm);
        IdpSecrets.onSave(this, realm); // last: only a valid config moves its secrets
    }

    private void checkInt(String key, int min, int max, String label) {
        String raw = getConfig().get(key);
        if (raw == null || raw.isBlank()) {
            return;
        }
        try {
            int v = Integer.parseInt(raw.trim());
            if (v < min || v > max) {
                throw new IllegalArgumentException(label + " must be between " + min + " and " + max);
            }
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(label + " must be a whole number");
        }
    }

    protected int intSetting(String key, int dflt, int min, int max) {
        String raw = getConfig().get(key);
        if (raw == null || raw.isBlank()) {
            return dflt;
        }
        try {
            int v = Integer.parseInt(raw.trim());
            return Math.max(min, Math.min(max, v));
        } catch (NumberFormatException e) {
            return dflt;
        }
    }

    protected boolean boolSetting(String key, boolean dflt) {
        String raw = getConfig().get(key);
        return raw == null || raw.isBlank() ? dflt : Boolean.parseBoolean(raw.trim());
    }
}
