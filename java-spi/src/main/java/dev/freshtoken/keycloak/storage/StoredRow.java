package dev.freshtoken.keycloak.storage;

import java.lang.reflect.InvocationTargetException;
import java.util.List;

import jakarta.persistence.EntityManager;
import jakarta.persistence.LockModeType;

import org.keycloak.models.KeycloakSession;

/**
 * The stored federated-identity row (Keycloak's {@code FEDERATED_IDENTITY}) read with a database
 * row lock ({@code SELECT ... FOR UPDATE}) in the caller's transaction. The lock is what makes a
 * refresh single-flight: a second holder blocks until the first one's transaction committed and
 * then reads the row it wrote; a node that dies mid-refresh loses its connection and the
 * database releases the lock at once.
 *
 * Keycloak's JPA module is reached by name ({@code JpaConnectionProvider#getEntityManager},
 * entity {@code FederatedIdentityEntity} with {@code user}, {@code identityProvider},
 * {@code token}, {@code userId}, {@code userName}); these are the same in Keycloak 26.4.7,
 * 26.5.6 and 26.7.3. The query is JPQL, so table names, schema and the lock syntax come from
 * Keycloak's own mapping and Hibernate's dialect (PostgreSQL, H2, MySQL, ...).
 */
public final class StoredRow {

    private static final String QUERY = "select f from FederatedIdentityEntity f where f.user.id = :userId and f.identityProvider = :alias";

    /** The row's token and the two link fields Keycloak's update writes back unchanged. */
    public record Row(String token, String federatedUserId, String federatedUsername) {
        @Override
        public String toString() {
            return "Row[federatedUserId=" + federatedUserId + "]"; // never the token
        }
    }

    private StoredRow() {
    }

    /** The row of (user, IdP), locked until the session's transaction ends; null if there is none. */
    public static Row lockAndRead(KeycloakSession session, String userId, String alias) {
        EntityManager em = JpaAccess.entityManager(session);
        List<?> rows = em.createQuery(QUERY)
                .setParameter("userId", userId)
                .setParameter("alias", alias)
                .setLockMode(LockModeType.PESSIMISTIC_WRITE)
                .getResultList();
        if (rows.isEmpty()) {
            return null;
        }
        Object e = rows.get(0);
        // A fresh session's persistence context is empty, but be sure the state is the row's now.
        em.refresh(e);
        return new Row((String) get(e, "getToken"), (String) get(e, "getUserId"), (String) get(e, "getUserName"));
    }

    private static Object get(Object entity, String getter) {
        try {
            return entity.getClass().getMethod(getter).invoke(entity);
        } catch (NoSuchMethodException | IllegalAccessException e) {
            throw new IllegalStateException("Keycloak's federated identity entity has no " + getter, e);
        } catch (InvocationTargetException e) {
            throw new IllegalStateException("reading the federated identity failed", e.getCause());
        }
    }
}
