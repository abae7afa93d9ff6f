package dev.freshtoken.keycloak.secrets;

import java.util.HashMap;
import java.util.List;

import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.component.ComponentModel;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.models.RealmModel;
import org.keycloak.models.utils.KeycloakModelUtils;
import org.keycloak.models.utils.PostMigrationEvent;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

import dev.freshtoken.keycloak.IdpSecretSpi;
import dev.freshtoken.keycloak.idp.AbstractFreshTokenFactory;

/**
 * The component type {@code fresh-token-idp-secret/idp-secret}: one component per IdP of our
 * types (parent: the realm, name: the IdP alias) whose properties, all secret-typed, are the
 * IdP's secret settings. Deleted with its IdP (see {@link IdpSecrets#onIdentityProviderRemoved}).
 */
public class IdpSecretStoreFactory implements IdpSecretSpi.HolderFactory {

    public static final String PROVIDER_ID = "idp-secret";

    private static final IdpSecretSpi.Holder HOLDER = () -> { };
    private static final Logger LOG = Logger.getLogger(IdpSecretStoreFactory.class);

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
        // Secrets saved in clear before this version: moved once the database is ready.
        factory.register(event -> {
            if (event instanceof PostMigrationEvent) {
                moveLegacySecrets(factory);
            }
        });
    }

    /** Every realm's IdPs of our types whose config still holds a plain secret: saved through onSave. */
    static void moveLegacySecrets(KeycloakSessionFactory factory) {
        int[] moved = {0};
        try {
            KeycloakModelUtils.runJobInTransaction(factory, session -> session.realms().getRealmsStream().forEach(realm -> {
                try {
                    session.getContext().setRealm(realm);
                    session.identityProviders().getAllStream()
                            .filter(m -> AbstractFreshTokenFactory.PROVIDER_IDS.contains(m.getProviderId()))
                            .filter(m -> IdpSecrets.SECRET_KEYS.stream().anyMatch(k -> IdpSecrets.isPlainSecret(m.getConfig().get(k))))
                            .toList()
                            .forEach(m -> {
                                IdentityProviderModel copy = new IdentityProviderModel(m);
                                copy.setConfig(new HashMap<>(m.getConfig()));
                                IdpSecrets.onSave(copy, realm);
                                session.identityProviders().update(copy);
                                moved[0]++;
                            });
                } catch (RuntimeException e) {
                    LOG.warnf("fresh-token: could not move the IdP secrets of realm '%s' into the masked store (%s); "
                            + "they stay usable, shown in clear until the IdP is saved", realm.getName(), e.getClass().getSimpleName());
                }
            }));
        } catch (RuntimeException e) {
            LOG.warnf("fresh-token: moving IdP secrets saved before masking failed (%s)", e.getClass().getSimpleName());
        }
        if (moved[0] > 0) {
            LOG.infof("fresh-token: moved the secret settings of %d IdP(s) saved in clear into the masked store", moved[0]);
        }
    }

    @Override
    public void close() {
    }

    @Override
    public void onCreate(KeycloakSession session, RealmModel realm, ComponentModel model) {
    }
}
