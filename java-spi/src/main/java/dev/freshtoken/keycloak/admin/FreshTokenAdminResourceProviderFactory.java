package dev.freshtoken.keycloak.admin;

import dev.freshtoken.keycloak.AdminResourceFactory;

/** Mounts {@link FreshTokenAdminResource} at {@code /admin/realms/{realm}/fresh-token}. */
public class FreshTokenAdminResourceProviderFactory extends AdminResourceFactory {

    public static final String ID = "fresh-token";

    public FreshTokenAdminResourceProviderFactory() {
        super(ID, FreshTokenAdminResource::new);
    }
}
