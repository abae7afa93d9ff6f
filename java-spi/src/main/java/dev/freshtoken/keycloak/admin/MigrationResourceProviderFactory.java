package dev.freshtoken.keycloak.admin;

import dev.freshtoken.keycloak.AdminResourceFactory;

/** Mounts {@link MigrationResource} at {@code /admin/realms/{realm}/fresh-token-migration}. */
public class MigrationResourceProviderFactory extends AdminResourceFactory {

    public static final String ID = "fresh-token-migration";

    public MigrationResourceProviderFactory() {
        super(ID, MigrationResource::new);
    }
}
