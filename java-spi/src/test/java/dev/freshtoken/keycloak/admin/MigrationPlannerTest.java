package dev.freshtoken.keycloak.admin;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

import dev.freshtoken.keycloak.idp.EntraConfig;
import dev.freshtoken.keycloak.idp.FreshTokenConfig;

/** The config rules of the IdP migration (issue 5), without Keycloak. */
class MigrationPlannerTest {

    private static final String T = "11111111-1111-1111-1111-111111111111";

    private static Map<String, String> entraOidc(String host) {
        Map<String, String> c = new HashMap<>();
        c.put("authorizationUrl", host + "/" + T + "/oauth2/v2.0/authorize");
        c.put("tokenUrl", host + "/" + T + "/oauth2/v2.0/token");
        c.put("issuer", host + "/" + T + "/v2.0");
        c.put("clientId", "app");
        c.put("clientSecret", "s3cr3t-value");
        c.put("defaultScope", "openid profile offline_access");
        return c;
    }

    @Test
    void entraUrlsGiveAuthorityHostAndTenant() {
        assertArrayEquals(new String[] {"https://login.microsoftonline.com", T},
                MigrationPlanner.entraAuthority(entraOidc("https://login.microsoftonline.com")));
        Map<String, String> issuerOnly = Map.of("issuer", "https://login.microsoftonline.us/contoso.com/v2.0");
        assertArrayEquals(new String[] {"https://login.microsoftonline.us", "contoso.com"}, MigrationPlanner.entraAuthority(issuerOnly));
        assertNull(MigrationPlanner.entraAuthority(Map.of("authorizationUrl",
                "https://kc.example/realms/x/protocol/openid-connect/auth")));
        // Entra v1 endpoints are not v2.
        assertNull(MigrationPlanner.entraAuthority(Map.of("authorizationUrl",
                "https://login.microsoftonline.com/" + T + "/oauth2/authorize")));
    }

    @Test
    void targetFollowsTheSourceWhenNotGiven() {
        assertEquals("entra-oidc", MigrationPlanner.target("oidc", null, entraOidc("https://login.microsoftonline.com")));
        assertEquals("fresh-oidc", MigrationPlanner.target("oidc", null, entraOidc("http://127.0.0.1:8099")));
        assertEquals("entra-oidc", MigrationPlanner.target("oidc", "entra-oidc", entraOidc("http://127.0.0.1:8099")));
        assertEquals("entra-oidc", MigrationPlanner.target("microsoft", "", Map.of()));
        assertEquals("oidc", MigrationPlanner.target("entra-oidc", "oidc", Map.of()));
    }

    @Test
    void refusalsCarryStableCodes() {
        assertEquals("target_required", assertThrows(MigrationPlanner.Refused.class,
                () -> MigrationPlanner.target("fresh-oidc", null, Map.of())).code);
        assertEquals("already_of_type", assertThrows(MigrationPlanner.Refused.class,
                () -> MigrationPlanner.target("oidc", "oidc", Map.of())).code);
        assertEquals("unsupported_source", assertThrows(MigrationPlanner.Refused.class,
                () -> MigrationPlanner.target("saml", "fresh-oidc", Map.of())).code);
        assertEquals("unsupported_target", assertThrows(MigrationPlanner.Refused.class,
                () -> MigrationPlanner.target("microsoft", "fresh-oidc", Map.of())).code);
        assertEquals("not_entra", assertThrows(MigrationPlanner.Refused.class,
                () -> MigrationPlanner.translate("oidc", "entra-oidc", Map.of("authorizationUrl", "https://idp.example/auth"))).code);
    }

    @Test
    void microsoftBecomesEntraWithTenantGraphScopeAndOidMarker() {
        Map<String, String> ms = new HashMap<>(Map.of("clientId", "app", "clientSecret", "x", "tenantId", T));
        MigrationPlanner.Translation t = MigrationPlanner.translate("microsoft", "entra-oidc", ms);
        assertEquals(T, t.config.get(EntraConfig.TENANT));
        assertEquals(EntraConfig.DEFAULT_AUTHORITY_HOST, t.config.get(EntraConfig.AUTHORITY_HOST));
        assertEquals("openid profile email User.Read", t.config.get("defaultScope"));
        assertEquals("true", t.config.get(FreshTokenConfig.ADD_OFFLINE_ACCESS));
        assertEquals("microsoft", t.config.get(MigrationPlanner.MIGRATED_FROM));
        assertFalse(t.config.containsKey("tenantId"));
        // No tenant: Keycloak's microsoft type used 'common'.
        assertEquals("common", MigrationPlanner.translate("microsoft", "entra-oidc", Map.of()).config.get(EntraConfig.TENANT));
    }

    @Test
    void scopesMergeWithoutDuplicatesIgnoringCase() {
        assertEquals("openid profile email User.read offline_access",
                MigrationPlanner.mergeScopes("openid profile email", "User.read openid offline_access User.Read"));
    }

    @Test
    void freshOidcRequestsOfflineAccessOnlyWhenTheStockScopesDid() {
        Map<String, String> with = entraOidc("http://127.0.0.1:8099");
        assertEquals("true", MigrationPlanner.translate("oidc", "fresh-oidc", with).config.get(FreshTokenConfig.ADD_OFFLINE_ACCESS));
        Map<String, String> without = new HashMap<>(with);
        without.put("defaultScope", "openid profile");
        MigrationPlanner.Translation t = MigrationPlanner.translate("oidc", "fresh-oidc", without);
        assertEquals("false", t.config.get(FreshTokenConfig.ADD_OFFLINE_ACCESS));
        assertTrue(t.warnings.stream().anyMatch(w -> w.contains("offline_access")));
    }

    @Test
    void backToStockKeepsTheScopesOurTypeSent() {
        Map<String, String> ours = new HashMap<>(Map.of(EntraConfig.TENANT, T, "defaultScope", "openid profile email User.Read",
                FreshTokenConfig.INITIALIZED, "true", MigrationPlanner.MIGRATED_FROM, "oidc"));
        MigrationPlanner.Translation t = MigrationPlanner.translate("entra-oidc", "oidc", ours);
        assertEquals("openid profile email User.Read offline_access", t.config.get("defaultScope"));
        assertFalse(t.config.containsKey(FreshTokenConfig.INITIALIZED));
        assertFalse(t.config.containsKey(MigrationPlanner.MIGRATED_FROM));
        ours.put(EntraConfig.TENANT, "organizations");
        assertTrue(MigrationPlanner.translate("entra-oidc", "oidc", ours).warnings.stream().anyMatch(w -> w.contains("tenant")));
    }

    @Test
    void diffMasksSecrets() {
        Map<String, Object> d = MigrationPlanner.diff(Map.of("clientSecret", "old-secret", "a", "1"),
                Map.of("clientSecret", "new-secret", "oboClientSecret", "obo-secret", "b", "2"));
        String shown = d.toString();
        assertFalse(shown.contains("old-secret") || shown.contains("new-secret") || shown.contains("obo-secret"), shown);
        assertEquals(List.of("a"), List.copyOf((java.util.Set<?>) d.get("removed")));
    }

    @Test
    void storedTokenFormatsAreClassifiedWithoutTheValues() {
        assertEquals(MigrationResource.Kind.REFRESHABLE, MigrationResource.classify("{\"access_token\":\"a\",\"refresh_token\":\"r\"}"));
        assertEquals(MigrationResource.Kind.NO_REFRESH_TOKEN, MigrationResource.classify("{\"access_token\":\"a\"}"));
        assertEquals(MigrationResource.Kind.REFRESHABLE, MigrationResource.classify("access_token=a&refresh_token=r&expires_in=3600"));
        assertEquals(MigrationResource.Kind.NO_REFRESH_TOKEN, MigrationResource.classify("access_token=a&refresh_token="));
        assertEquals(MigrationResource.Kind.UNREADABLE, MigrationResource.classify("v1.AbCdEf0123456789"));
        assertEquals(MigrationResource.Kind.UNREADABLE, MigrationResource.classify("{not json"));
    }

    @Test
    void ourTypesAcceptMappersWrittenForKeycloaksOidcTypes() {
        assertTrue(MigrationResource.supports("entra-oidc", List.of("keycloak-oidc", "oidc")));
        assertTrue(MigrationResource.supports("fresh-oidc", List.of("*")));
        assertFalse(MigrationResource.supports("entra-oidc", List.of("microsoft")));
        assertFalse(MigrationResource.supports("oidc", List.of("entra-oidc")));
    }
}
