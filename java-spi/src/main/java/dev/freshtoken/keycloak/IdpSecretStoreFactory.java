package dev.freshtoken.keycloak;

import java.util.List;

import org.keycloak.Config;
import org.keycloak.component.ComponentModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.models.RealmModel;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

/**
 * The component type {@code fresh-token-idp-secret/idp-secret}: one component per IdP of our
 * types (parent: the realm, name: the IdP alias) whose properties, all secret-typed, are the
 * IdP's secret settings. Deleted with its IdP (see {@link IdpSecrets#onIdentityProviderRemoved}).
 */
public class IdpSecretStoreFactory implements IdpSecretSpi.HolderFactory {

    public static final String PROVIDER_ID = "idp-secret";

    private static final IdpSecretSpi.Holder HOLDER = () -> { };

    @Override
    public IdpSecretSpi.Holder create(KeycloakSession session, ComponentModel model) {
        return HOLDER;
    }

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public String getHelpText() {
        return "Secret settings of a fresh-token identity provider (kept here so that Keycloak masks them).";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        ProviderConfigurationBuilder b = ProviderConfigurationBuilder.create();
        for (String key : IdpSecrets.SECRET_KEYS) {
            b.property().name(key).label(key).type(ProviderConfigProperty.PASSWORD).secret(true).add();
        }
        return b.build();
    }

    @Override
    public void init(Config.Scope config) {
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
        factory.register(IdpSecrets::onIdentityProviderRemoved);
    }

    @Override
    public void close() {
    }

    @Override
    public void onCreate(KeycloakSession session, RealmModel realm, ComponentModel model) {
    }
}
