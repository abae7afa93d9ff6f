package dev.freshtoken.keycloak.idp;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.keycloak.broker.oidc.OIDCIdentityProviderFactory;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

/** Provider id {@code fresh-oidc}: any OpenID Connect IdP, explicit endpoint URLs. */
public class FreshOidcIdentityProviderFactory extends AbstractFreshTokenFactory {

    public static final String PROVIDER_ID = "fresh-oidc";

    public FreshOidcIdentityProviderFactory() {
        super(PROVIDER_ID, "OpenID Connect (fresh tokens)",
                "Any OpenID Connect v1.0 IdP. The broker token endpoint hands out an access token that is valid now, "
                        + "refreshing it with the stored refresh token when needed.");
    }

    @Override
    public FreshTokenIdentityProvider create(KeycloakSession session, IdentityProviderModel model) {
        return new FreshTokenIdentityProvider(session, new FreshTokenConfig(model));
    }

    @Override
    public IdentityProviderModel createConfig() {
        return new FreshTokenConfig();
    }

    /** Discovery import works as for Keycloak's own OIDC type. */
    @Override
    public Map<String, String> parseConfig(KeycloakSession session, String config) {
        return new OIDCIdentityProviderFactory().parseConfig(session, config);
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        List<ProviderConfigProperty> list = new ArrayList<>(ProviderConfigurationBuilder.create()
                .property().name("authorizationUrl").label("Authorization URL").type(ProviderConfigProperty.STRING_TYPE)
                .required(true).helpText("The IdP's authorization endpoint.").add()
                .property().name("tokenUrl").label("Token URL").type(ProviderConfigProperty.STRING_TYPE)
                .required(true).helpText("The IdP's token endpoint; refreshes are sent here.").add()
                .property().name("issuer").label("Issuer").type(ProviderConfigProperty.STRING_TYPE)
                .helpText("Expected 'iss' of the IdP's tokens.").add()
                .property().name("jwksUrl").label("JWKS URL").type(ProviderConfigProperty.STRING_TYPE)
                .helpText("The IdP's signing keys.").add()
                .build());
        list.addAll(commonProperties(false));
        return list;
    }
}
