package dev.freshtoken.keycloak.idp;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;

import org.junit.jupiter.api.Test;
import org.keycloak.models.IdentityProviderModel;

/**
 * The tenant check (EntraConfig.tenantRefusal, applied by FreshTokenIdentityProvider.tenantAccepted
 * to multi-tenant IdPs only) that {@code verify} (login, token exchange; client assertions on 26.4) and
 * {@code verifySignature} (client assertions and the JWT authorization grant from 26.5) apply
 * to every token of a multi-tenant Entra IdP (issue 11 item 6). The token exchange path is
 * tested end to end in tests/e2e/test_token_exchange.py.
 */
class TenantCheckTest {

    private static final String HOST = "https://login.microsoftonline.com";
    private static final String ALLOWED = "11111111-1111-1111-1111-111111111111";
    private static final String OTHER = "33333333-3333-3333-3333-333333333333";

    /** What FreshTokenIdentityProvider.tenantAccepted decides (it refuses when this gives a reason). */
    private static final class Idp {
        private final EntraConfig config;

        Idp(EntraConfig config) {
            this.config = config;
        }

        boolean tenantAccepted(byte[] payload) {
            return !config.isMultiTenant() || config.tenantRefusal(payload) == null;
        }
    }

    private static Idp idp(String tenant, String allowed) {
        IdentityProviderModel model = new IdentityProviderModel();
        model.setAlias("entra");
        model.setProviderId("entra-oidc");
        model.getConfig().put(EntraConfig.TENANT, tenant);
        if (allowed != null) {
            model.getConfig().put(EntraConfig.ALLOWED_TENANTS, allowed);
        }
        return new Idp(new EntraConfig(model));
    }

    private static byte[] jwt(String payloadJson) {
        return payloadJson.getBytes(StandardCharsets.UTF_8);
    }

    private static byte[] token(String tid, String iss) {
        return jwt("{\"sub\":\"s\",\"tid\":\"" + tid + "\",\"iss\":\"" + iss + "\"}");
    }

    @Test
    void multiTenantIdpRefusesATokenOfATenantNotOnTheAllowList() {
        Idp p = idp("organizations", ALLOWED);
        assertFalse(p.tenantAccepted(token(OTHER, HOST + "/" + OTHER + "/v2.0")));
        assertTrue(p.tenantAccepted(token(ALLOWED, HOST + "/" + ALLOWED + "/v2.0")));
    }

    @Test
    void multiTenantIdpRefusesATokenWhoseIssuerIsNotItsTenantsOrThatHasNoTenant() {
        Idp p = idp("common", null);
        assertFalse(p.tenantAccepted(token(ALLOWED, HOST + "/" + OTHER + "/v2.0")));
        assertFalse(p.tenantAccepted(token(ALLOWED, "https://sts.windows.net/" + ALLOWED + "/")));
        assertFalse(p.tenantAccepted(jwt("{\"sub\":\"s\",\"iss\":\"" + HOST + "/" + ALLOWED + "/v2.0\"}")));
        assertFalse(p.tenantAccepted(jwt("not json")));
        assertFalse(p.tenantAccepted(jwt("[1]")));
        // no allow-list: any tenant whose issuer matches its tid
        assertTrue(p.tenantAccepted(token(OTHER, HOST + "/" + OTHER + "/v2.0")));
    }

    @Test
    void singleTenantIdpLeavesTheIssuerCheckToKeycloak() {
        Idp p = idp(ALLOWED, OTHER);
        assertTrue(p.tenantAccepted(token(OTHER, "whatever")));
    }
}
