package dev.freshtoken.keycloak;

import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.services.resources.admin.AdminEventBuilder;
import org.keycloak.services.resources.admin.ext.AdminRealmResourceProvider;
import org.keycloak.services.resources.admin.ext.AdminRealmResourceProviderFactory;
import org.keycloak.services.resources.admin.fgap.AdminPermissionEvaluator;

/**
 * What our admin REST extensions ({@code /admin/realms/{realm}/<id>}) share: the factory is its
 * own (stateless) provider and builds one resource per request from Keycloak's admin context.
 */
public abstract class AdminResourceFactory implements AdminRealmResourceProviderFactory, AdminRealmResourceProvider,
        NoLifecycle<AdminRealmResourceProvider> {

    /** The resource's constructor: session, realm, the caller's permissions and the admin event builder. */
    @FunctionalInterface
    public interface Resource {
        Object create(KeycloakSession session, RealmModel realm, AdminPermissionEvaluator auth, AdminEventBuilder adminEvent);
    }

    private final String id;
    private final Resource resource;

    /** {@code id}: the provider id, also the path below {@code /admin/realms/{realm}/} (never changes: admin URLs name it). */
    protected AdminResourceFactory(String id, Resource resource) {
        this.id = id;
        this.resource = resource;
    }

    @Override
    public AdminRealmResourceProvider create(KeycloakSession session) {
        return this;
    }

    @Override
    public Object getResource(KeycloakSession session, RealmModel realm, AdminPermissionEvaluator auth, AdminEventBuilder adminEvent) {
        return resource.create(session, realm, auth, adminEvent);
    }

    @Override
    public String getId() {
        return id;
    }

    /** Both the factory's and the provider's close: nothing to release. */
    @Override
    public void close() {
    }
}
