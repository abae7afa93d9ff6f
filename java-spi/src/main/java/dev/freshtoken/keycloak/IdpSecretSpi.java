package dev.freshtoken.keycloak;

import org.keycloak.component.ComponentFactory;
import org.keycloak.provider.Provider;
import org.keycloak.provider.ProviderFactory;
import org.keycloak.provider.Spi;

/**
 * Our own small SPI, {@code fresh-token-idp-secret}: realm components that hold the
 * secret-typed settings of our IdP types (the on-behalf-of client secret). Keycloak masks a
 * component's secret-typed properties wherever it shows components (admin REST, admin events,
 * partial export) and keeps vault references as they are; for an IdP's config map it masks
 * only {@code clientSecret} (StripSecretsUtils#stripBroker), so our secrets are kept here and
 * the IdP config holds the mask {@code **********} instead.
 */
public class IdpSecretSpi implements Spi {

    public static final String NAME = "fresh-token-idp-secret";

    /** The provider type of the components (its class name is the component's providerType). */
    public interface Holder extends Provider {
    }

    /** Factories of {@link Holder}s; one implementation, {@link dev.freshtoken.keycloak.secrets.IdpSecretStoreFactory}. */
    public interface HolderFactory extends ComponentFactory<Holder, Holder> {
    }

    @Override
    public boolean isInternal() {
        return false;
    }

    @Override
    public String getName() {
        return NAME;
    }

    @Override
    public Class<? extends Provider> getProviderClass() {
        return Holder.class;
    }

    @Override
    @SuppressWarnings("rawtypes")
    public Class<? extends ProviderFactory> getProviderFactoryClass() {
        return HolderFactory.class;
    }
}
