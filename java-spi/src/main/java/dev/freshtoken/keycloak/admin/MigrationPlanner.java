package dev.freshtoken.keycloak.admin;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import dev.freshtoken.keycloak.idp.EntraConfig;
import dev.freshtoken.keycloak.idp.EntraOidcIdentityProviderFactory;
import dev.freshtoken.keycloak.idp.FreshOidcIdentityProviderFactory;
import dev.freshtoken.keycloak.idp.FreshTokenConfig;
import dev.freshtoken.keycloak.nativecore.ErrorCode;

/**
 * The config side of moving an identity provider between Keycloak's stock types ({@code oidc},
 * {@code keycloak-oidc}, {@code microsoft}) and ours ({@code entra-oidc}, {@code fresh-oidc}).
 * Pure functions on the IdP's config map, so that the rules are testable without Keycloak;
 * {@link MigrationResource} applies the result in the request's transaction.
 */
public final class MigrationPlanner {

    static final String OIDC = "oidc";
    static final String KEYCLOAK_OIDC = "keycloak-oidc";
    public static final String MICROSOFT = "microsoft";
    static final String ENTRA = EntraOidcIdentityProviderFactory.PROVIDER_ID;
    static final String FRESH = FreshOidcIdentityProviderFactory.PROVIDER_ID;

    /** Config key naming the type an IdP was moved from (the microsoft type identifies users by object ID). */
    public static final String MIGRATED_FROM = "freshTokenMigratedFrom";

    /** Mappers written for Keycloak's OIDC types read what our OIDC-based types provide (ID token, userinfo). */
    public static final List<String> OIDC_MAPPER_TYPES = List.of(OIDC, KEYCLOAK_OIDC);

    static final Set<String> SOURCES = Set.of(OIDC, KEYCLOAK_OIDC, MICROSOFT, ENTRA, FRESH);
    static final Set<String> TARGETS = Set.of(ENTRA, FRESH, OIDC);
    static final Set<String> ENTRA_HOSTS = Set.of("login.microsoftonline.com", "login.microsoftonline.us",
            "login.partner.microsoftonline.cn");
    /** Keycloak's microsoft provider: fixed endpoints at this host, tenant in config key tenantId. */
    static final String MICROSOFT_TENANT_KEY = "tenantId";
    static final String MICROSOFT_DEFAULT_SCOPE = "User.Read";
    static final String ENTRA_LOGIN_SCOPES = "openid profile email";

    /** {authority host}/{tenant}/oauth2/v2.0/authorize|token, or the v2 issuer {authority host}/{tenant}/v2.0 */
    private static final Pattern ENTRA_URL = Pattern.compile(
            "^(https?://[^/?#]+)/([A-Za-z0-9.-]+)/(?:oauth2/v2\\.0/(?:authorize|token)|v2\\.0/?)$");

    private MigrationPlanner() {
    }

    /** A refusal with a stable code, answered as JSON by the resource. */
    static final class Refused extends RuntimeException {
        private static final long serialVersionUID = 1L;
        final ErrorCode error;
        final int status;
        final String code;

        Refused(ErrorCode error, String message) {
            super(message, null, false, false);
            this.error = error;
            this.status = error.status();
            this.code = error.code();
        }
    }

    /** What the move would do to the config map; {@link #config} is the new map, validated later by the target type. */
    static final class Translation {
        final String from;
        final String to;
        final Map<String, String> config;
        final List<String> notes = new ArrayList<>();
        final List<String> warnings = new ArrayList<>();

        Translation(String from, String to, Map<String, String> config) {
            this.from = from;
            this.to = to;
            this.config = config;
        }
    }

    /** The Entra authority host and tenant an OIDC IdP points at, or null when its URLs are not of Entra's v2 shape. */
    static String[] entraAuthority(Map<String, String> config) {
        for (String key : new String[] {"authorizationUrl", "issuer", "tokenUrl"}) {
            String v = config.get(key);
            if (v == null) {
                continue;
            }
            Matcher m = ENTRA_URL.matcher(v.trim());
            if (m.matches()) {
                return new String[] {m.group(1), m.group(2)};
            }
        }
        return null;
    }

    static boolean isMicrosoftHost(String authorityHost) {
        String h = authorityHost.toLowerCase(Locale.ROOT).replaceFirst("^https://", "");
        return ENTRA_HOSTS.contains(h);
    }

    /** The target type for {@code ?to=} (null: chosen from the source). */
    static String target(String from, String to, Map<String, String> config) {
        if (!SOURCES.contains(from)) {
            throw new Refused(ErrorCode.UNSUPPORTED_SOURCE, "identity provider type '" + from
                    + "' cannot be moved; supported: oidc, keycloak-oidc, microsoft, entra-oidc, fresh-oidc");
        }
        String target = to == null || to.isBlank() ? null : to.trim();
        if (target == null) {
            if (from.equals(MICROSOFT)) {
                target = ENTRA;
            } else if (from.equals(OIDC) || from.equals(KEYCLOAK_OIDC)) {
                String[] a = entraAuthority(config);
                target = a != null && isMicrosoftHost(a[0]) ? ENTRA : FRESH;
            } else {
                throw new Refused(ErrorCode.TARGET_REQUIRED, "the identity provider is already of type '" + from
                        + "'; give ?to=oidc to move it back to Keycloak's OpenID Connect type");
            }
        }
        if (!TARGETS.contains(target)) {
            throw new Refused(ErrorCode.UNSUPPORTED_TARGET, "?to= must be entra-oidc, fresh-oidc or oidc");
        }
        if (target.equals(from)) {
            throw new Refused(ErrorCode.ALREADY_OF_TYPE, "the identity provider is already of type '" + from + "'");
        }
        if (from.equals(MICROSOFT) && !target.equals(ENTRA)) {
            throw new Refused(ErrorCode.UNSUPPORTED_TARGET, "an IdP of type microsoft can be moved to entra-oidc only");
        }
        if (target.equals(OIDC) && !(from.equals(ENTRA) || from.equals(FRESH))) {
            throw new Refused(ErrorCode.UNSUPPORTED_TARGET, "only entra-oidc and fresh-oidc IdPs are moved back to oidc");
        }
        return target;
    }

    /** The new config map for the move (before the target type's own validation fills in derived values). */
    static Translation translate(String from, String to, Map<String, String> current) {
        Map<String, String> c = new LinkedHashMap<>(current);
        Translation t = new Translation(from, to, c);
        if (to.equals(OIDC)) {
            toStock(t);
            return t;
        }
        // Creation-time defaults of our types (minimum validity 60 s, refresh token not handed out, store
        // tokens on) apply once more on the move; keys already set are kept.
        c.remove(FreshTokenConfig.INITIALIZED);
        // Sticky for microsoft: users not signed in since still carry their object ID as link.
        if (!MICROSOFT.equals(c.get(MIGRATED_FROM))) {
            c.put(MIGRATED_FROM, from);
        }
        if (to.equals(ENTRA)) {
            toEntra(t);
        } else {
            String scope = c.getOrDefault("defaultScope", "");
            boolean offline = hasScope(scope, "offline_access");
            c.put(FreshTokenConfig.ADD_OFFLINE_ACCESS, Boolean.toString(offline
                    || Boolean.parseBoolean(current.getOrDefault(FreshTokenConfig.ADD_OFFLINE_ACCESS, "false"))));
            if (!offline && !Boolean.parseBoolean(c.get(FreshTokenConfig.ADD_OFFLINE_ACCESS))) {
                t.warnings.add("the login scopes do not ask for offline_access: the IdP may issue no refresh token, and "
                        + "tokens then cannot be refreshed; set 'Request offline_access' (addOfflineAccess=true) if the IdP supports it");
            }
        }
        t.notes.add("store tokens is switched on (the stored token is what gets refreshed)");
        if (!c.containsKey(FreshTokenConfig.MIN_VALIDITY)) {
            t.notes.add("minValidityToken: Keycloak's default 5 s becomes " + FreshTokenConfig.DEFAULT_MIN_VALIDITY_S
                    + " s (a token expiring sooner is refreshed before it is handed out)");
        }
        return t;
    }

    private static void toEntra(Translation t) {
        Map<String, String> c = t.config;
        String tenant;
        String host;
        if (t.from.equals(MICROSOFT)) {
            String configured = c.remove(MICROSOFT_TENANT_KEY);
            tenant = configured == null || configured.isBlank() ? "common" : configured.trim();
            host = EntraConfig.DEFAULT_AUTHORITY_HOST;
            if (configured == null || configured.isBlank()) {
                t.notes.add("no tenant was set (Keycloak's microsoft type then uses 'common'): entraTenant=common, "
                        + "any Entra tenant may sign in; set entraAllowedTenants to restrict it");
            }
            // The microsoft type asked for a Graph token (default scope User.read); keep that resource and add
            // the OpenID scopes our OIDC-based type needs.
            String scope = c.get("defaultScope");
            if (scope == null || scope.isBlank()) {
                scope = MICROSOFT_DEFAULT_SCOPE;
            }
            c.put("defaultScope", mergeScopes(ENTRA_LOGIN_SCOPES, scope));
            // Keycloak's microsoft type took the user from Graph /me; ours reads the ID token.
            c.remove("userInfoUrl");
            t.notes.add("users were identified by their Entra object ID (Graph /me 'id'); our type uses the ID token's "
                    + "'sub'. Each linked user is found by the 'oid' claim at the next sign-in and the link is moved to 'sub'");
        } else if (c.get(EntraConfig.TENANT) != null && !c.get(EntraConfig.TENANT).isBlank()) {
            tenant = c.get(EntraConfig.TENANT).trim();
            host = c.getOrDefault(EntraConfig.AUTHORITY_HOST, EntraConfig.DEFAULT_AUTHORITY_HOST);
        } else {
            String[] a = entraAuthority(c);
            if (a == null) {
                throw new Refused(ErrorCode.NOT_ENTRA, "the IdP's authorization URL, issuer and token URL are not Microsoft "
                        + "Entra ID v2 URLs ({authority host}/{tenant}/oauth2/v2.0/authorize); move it to fresh-oidc instead");
            }
            host = a[0];
            tenant = a[1];
        }
        c.put(EntraConfig.TENANT, tenant);
        c.put(EntraConfig.AUTHORITY_HOST, host);
        c.put(FreshTokenConfig.ADD_OFFLINE_ACCESS, "true");
        if (!hasScope(c.getOrDefault("defaultScope", ""), "offline_access")) {
            t.notes.add("offline_access is now requested at login (addOfflineAccess=true): users who signed in without it "
                    + "have no refresh token and get reauth_required until they sign in again");
        }
    }

    /** Back to Keycloak's oidc type: endpoints are already in Keycloak's keys; keep the scopes that were really sent. */
    private static void toStock(Translation t) {
        Map<String, String> c = t.config;
        FreshTokenConfig ours = new FreshTokenConfig();
        ours.setConfig(new LinkedHashMap<>(c));
        if (t.from.equals(ENTRA) && !(c.getOrDefault(EntraConfig.TENANT, "").isBlank())) {
            // Our entra-oidc type defaults offline_access on.
            if (!c.containsKey(FreshTokenConfig.ADD_OFFLINE_ACCESS)) {
                ours.getConfig().put(FreshTokenConfig.ADD_OFFLINE_ACCESS, "true");
            }
            String tenant = c.get(EntraConfig.TENANT).trim().toLowerCase(Locale.ROOT);
            if (tenant.equals("common") || tenant.equals("organizations")) {
                t.warnings.add("multi-tenant (tenant '" + tenant + "'): Keycloak's oidc type does not check each ID token's "
                        + "tenant; entraAllowedTenants is no longer enforced and users of any Entra tenant can sign in");
            }
        }
        c.put("defaultScope", ours.effectiveLoginScope());
        c.remove(FreshTokenConfig.INITIALIZED);
        if (!MICROSOFT.equals(c.get(MIGRATED_FROM))) {
            c.remove(MIGRATED_FROM);
        }
        t.notes.add("the login scopes become the ones our type sent (offline_access included when it was added), "
                + "so Keycloak keeps receiving refresh tokens");
        t.notes.add("settings of our types stay in the config, unused by Keycloak's oidc type, so a later move back keeps them");
        if (!c.getOrDefault(FreshTokenConfig.ALLOWED_CLIENTS, "").isBlank()) {
            t.warnings.add("tokenReaderClients is no longer enforced: any client whose users hold broker/read-token can read tokens");
        }
        t.warnings.add("Keycloak's broker token endpoint returns the stored token as is, refresh token included, "
                + "and refreshes without a cluster-wide lock");
        t.warnings.add("the extension's endpoints (/realms/{realm}/fresh-token/{alias}/...) and ?scope= tokens stop "
                + "working for this IdP");
    }

    static boolean hasScope(String scopes, String scope) {
        for (String s : scopes.trim().split("\\s+")) {
            if (s.equals(scope)) {
                return true;
            }
        }
        return false;
    }

    /** Space-separated union, first occurrence wins (case-insensitive for Entra scope names). */
    static String mergeScopes(String first, String second) {
        Set<String> seen = new LinkedHashSet<>();
        List<String> out = new ArrayList<>();
        for (String s : (first + " " + second).trim().split("\\s+")) {
            if (!s.isEmpty() && seen.add(s.toLowerCase(Locale.ROOT))) {
                out.add(s);
            }
        }
        return String.join(" ", out);
    }

    /** Keys whose values never leave Keycloak in a plan or an admin event. */
    static boolean isSecretKey(String key) {
        String k = key.toLowerCase(Locale.ROOT);
        return k.contains("secret") || k.contains("password") || k.contains("privatekey");
    }

    static String shown(String key, String value) {
        return value == null ? null : isSecretKey(key) ? "**********" : value;
    }

    /** added / changed / removed keys between two config maps, secrets masked. */
    static Map<String, Object> diff(Map<String, String> before, Map<String, String> after) {
        Map<String, Object> added = new TreeMap<>();
        Map<String, Object> changed = new TreeMap<>();
        Set<String> removed = new TreeSet<>();
        for (Map.Entry<String, String> e : after.entrySet()) {
            String old = before.get(e.getKey());
            if (old == null) {
                added.put(e.getKey(), shown(e.getKey(), e.getValue()));
            } else if (!old.equals(e.getValue())) {
                Map<String, String> ch = new LinkedHashMap<>();
                ch.put("from", shown(e.getKey(), old));
                ch.put("to", shown(e.getKey(), e.getValue()));
                changed.put(e.getKey(), ch);
            }
        }
        for (String k : before.keySet()) {
            if (!after.containsKey(k)) {
                removed.add(k);
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("added", added);
        out.put("changed", changed);
        out.put("removed", removed);
        return out;
    }
}
