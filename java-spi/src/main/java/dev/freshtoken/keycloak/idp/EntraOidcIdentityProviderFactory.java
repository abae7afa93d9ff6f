package dev.freshtoken.keycloak.idp;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

/** Provider id {@code entra-oidc}: Microsoft Entra ID, endpoints derived from tenant and authority host. */
public class EntraOidcIdentityProviderFactory extends AbstractFreshTokenFactory {

    public static final String PROVIDER_ID = "entra-oidc";

    public EntraOidcIdentityProviderFactory() {
        super(PROVIDER_ID, "Microsoft Entra ID (fresh tokens)",
                "Microsoft Entra ID (Azure AD) v2.0 via OpenID Connect. The broker token endpoint hands out an access token "
                        + "that is valid now, refreshing it with the stored refresh token when needed.");
    }

    @Override
    public FreshTokenIdentityProvider create(KeycloakSession session, IdentityProviderModel model) {
        return new FreshTokenIdentityProvider(session, new EntraConfig(model));
    }

    @Override
    public IdentityProviderModel createConfig() {
        return new EntraConfig();
    }

    @Override
    public Map<String, String> parseConfig(KeycloakSession session, String config) {
        throw new IllegalArgumentException("entra-oidc derives its endpoints from the tenant; no discovery import is needed");
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        List<ProviderConfigProperty> list = new ArrayList<>(ProviderConfigurationBuilder.create()
                .property().name(EntraConfig.TENANT).label("Tenant").type(ProviderConfigProperty.STRING_TYPE)
                .required(true)
                .helpText("Directory (tenant) ID (a GUID) or a verified domain such as contoso.onmicrosoft.com. "
                        + "With a tenant ID the expected issuer is checked exactly.")
                .add()
                .property().name(EntraConfig.AUTHORITY_HOST).label("Authority host").type(ProviderConfigProperty.STRING_TYPE)
                .defaultValue(EntraConfig.DEFAULT_AUTHORITY_HOST)
                .helpText("https://login.microsoftonline.com (global), https://login.microsoftonline.us (US Government), "
                        + "https://login.partner.microsoftonline.cn (China, 21Vianet). Must be https.")
                .add()
                .property().name(EntraConfig.ALLOWED_TENANTS).label("Allowed tenants (multi-tenant)")
                .type(ProviderConfigProperty.MULTIVALUED_STRING_TYPE)
                .helpText("With tenant 'common' or 'organizations': the tenant IDs whose users may sign in. Empty: any "
                        + "Entra tenant. Each ID token's issuer must match its own tenant ID.")
                .add()
                .build());
        list.addAll(commonProperties(true));
        return list;
    }
}
