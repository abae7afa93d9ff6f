package dev.freshtoken.keycloak.storage;

import java.lang.reflect.InvocationTargetException;
import java.util.stream.Stream;

import jakarta.persistence.EntityManager;

import org.keycloak.models.KeycloakSession;
import org.keycloak.provider.Provider;

/**
 * The request's JPA entity manager and the two Keycloak entities the IdP migration touches.
 * Keycloak's JPA module has no usable POM on Maven Central, so its classes are reached by name;
 * the names and members used here are the same in Keycloak 26.4.7, 26.5.6 and 26.7.3
 * ({@code JpaConnectionProvider#getEntityManager}, {@code IdentityProviderEntity#setProviderId},
 * entities {@code FederatedIdentityEntity} and {@code BrokerLinkEntity} with {@code realmId},
 * {@code identityProvider}, {@code token}).
 */
public final class JpaAccess {

    private static final String JPA_PROVIDER = "org.keycloak.connections.jpa.JpaConnectionProvider";
    private static final String IDP_ENTITY = "org.keycloak.models.jpa.entities.IdentityProviderEntity";

    private JpaAccess() {
    }

    static Class<?> load(String name) throws ClassNotFoundException {
        ClassLoader tccl = Thread.currentThread().getContextClassLoader();
        try {
            return Class.forName(name, false, tccl != null ? tccl : JpaAccess.class.getClassLoader());
        } catch (ClassNotFoundException e) {
            return Class.forName(name, false, JpaAccess.class.getClassLoader());
        }
    }

    /** The entity manager of the request's transaction (Keycloak's JPA store). */
    public static EntityManager entityManager(KeycloakSession session) {
        try {
            Class<? extends Provider> type = load(JPA_PROVIDER).asSubclass(Provider.class);
            Provider provider = session.getProvider(type);
            if (provider == null) {
                throw new IllegalStateException("Keycloak's JPA store is not in use");
            }
            return (EntityManager) type.getMethod("getEntityManager").invoke(provider);
        } catch (ClassNotFoundException | NoSuchMethodException | IllegalAccessException e) {
            throw new IllegalStateException("Keycloak's JPA store is not available: " + e, e);
        } catch (InvocationTargetException e) {
            Throwable c = e.getCause(); // a database failure stays what it is (TokenService maps it to retry_later)
            throw c instanceof RuntimeException r ? r : new IllegalStateException("Keycloak's JPA store failed", c);
        }
    }

    /**
     * Sets the stored type of an IdP on its managed entity; flushed with the rest of the request's
     * transaction (Keycloak's own update of the IdP leaves this column alone).
     */
    public static void setProviderId(EntityManager em, String internalId, String providerId) {
        try {
            Class<?> type = load(IDP_ENTITY);
            Object entity = em.find(type, internalId);
            if (entity == null) {
                throw new IllegalStateException("identity provider row " + internalId + " not found");
            }
            type.getMethod("setProviderId", String.class).invoke(entity, providerId);
        } catch (ClassNotFoundException | NoSuchMethodException | IllegalAccessException e) {
            throw new IllegalStateException("cannot change the identity provider type on this Keycloak version: " + e, e);
        } catch (InvocationTargetException e) {
            throw new IllegalStateException("cannot change the identity provider type: " + e.getCause(), e.getCause());
        }
    }

    /** Stored tokens of every link to the IdP (local users and users of user-storage providers). */
    public static Stream<String> storedTokens(EntityManager em, String realmId, String alias) {
        Stream<String> local = em.createQuery("select f.token from FederatedIdentityEntity f "
                        + "where f.realmId = :realm and f.identityProvider = :alias", String.class)
                .setParameter("realm", realmId).setParameter("alias", alias).getResultStream();
        Stream<String> storage = em.createQuery("select b.token from BrokerLinkEntity b "
                        + "where b.realmId = :realm and b.identityProvider = :alias", String.class)
                .setParameter("realm", realmId).setParameter("alias", alias).getResultStream();
        return Stream.concat(local, storage).onClose(() -> {
            local.close();
            storage.close();
        });
    }
}
