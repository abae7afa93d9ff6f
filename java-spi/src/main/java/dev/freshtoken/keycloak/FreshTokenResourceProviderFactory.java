package dev.freshtoken.keycloak;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.services.resource.RealmResourceProvider;
import org.keycloak.services.resource.RealmResourceProviderFactory;

/** Mounts {@link FreshTokenResource} at {@code /realms/{realm}/fresh-token}. */
public class FreshTokenResourceProviderFactory implements RealmResourceProviderFactory {

    public static final String ID = "fresh-token";

    @Override
    public RealmResourceProvider create(KeycloakSession session) {
        return new FreshTokenResource(session);
    }

    @Override
    public void init(Config.Scope config) {
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
    }

    @Override
    public String getId() {
        return ID;
    }
}
