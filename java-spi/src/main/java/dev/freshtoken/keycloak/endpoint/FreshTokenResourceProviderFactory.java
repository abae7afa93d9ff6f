package dev.freshtoken.keycloak.endpoint;

import java.util.List;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;
import org.keycloak.services.resource.RealmResourceProvider;
import org.keycloak.services.resource.RealmResourceProviderFactory;

import dev.freshtoken.keycloak.NoLifecycle;
import dev.freshtoken.keycloak.refresh.RefreshLimiter;

/** Mounts {@link FreshTokenResource} at {@code /realms/{realm}/fresh-token}. */
public class FreshTokenResourceProviderFactory implements RealmResourceProviderFactory, NoLifecycle<RealmResourceProvider> {

    public static final String ID = "fresh-token";

    @Override
    public RealmResourceProvider create(KeycloakSession session) {
        return new FreshTokenResource(session);
    }

    /** SPI options {@code --spi-realm-restapi-extension--fresh-token--max-concurrent-refreshes} and {@code --refresh-permit-wait-ms}. */
    @Override
    public void init(Config.Scope config) {
        RefreshLimiter.configure(config.get(RefreshLimiter.MAX_OPTION), config.get(RefreshLimiter.WAIT_OPTION));
    }

    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return ProviderConfigurationBuilder.create()
                .property().name(RefreshLimiter.MAX_OPTION).type("int").defaultValue(RefreshLimiter.DEFAULT_MAX)
                .helpText("Upstream refreshes in flight at once on this node, for all fresh-token IdPs. Each holds two database "
                        + "connections (the request's and the locked row's) while the IdP answers; callers beyond it get "
                        + "retry_later. Keep twice this well below db-pool-max-size.")
                .add()
                .property().name(RefreshLimiter.WAIT_OPTION).type("int").defaultValue(RefreshLimiter.DEFAULT_WAIT_MS)
                .helpText("How long a refresh waits for a free slot before answering retry_later (0 to 5000 ms).")
                .add().build();
    }

    @Override
    public String getId() {
        return ID;
    }
}
