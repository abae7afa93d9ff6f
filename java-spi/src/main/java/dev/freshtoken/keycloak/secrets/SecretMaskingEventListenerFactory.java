package dev.freshtoken.keycloak.secrets;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import jakarta.persistence.EntityManager;
import org.jboss.logging.Logger;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventListenerProviderFactory;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.KeycloakSession;

import dev.freshtoken.keycloak.NoLifecycle;
import dev.freshtoken.keycloak.storage.JpaAccess;

/**
 * A global admin-event listener (runs for every realm without being enabled there) that masks
 * our IdP secret settings in admin events' representations. Keycloak masks an IdP's
 * {@code clientSecret} before it stores the event, but the admin's own input (a new on-behalf-of
 * secret typed in) would be stored as sent; Keycloak's AdminEventBuilder#send stores the event
 * (JPA persist, same transaction) and then calls the listeners with the same event, so this
 * listener rewrites the stored row's representation by event id before the commit, and the
 * event object that later listeners see.
 */
public class SecretMaskingEventListenerFactory implements EventListenerProviderFactory, NoLifecycle<EventListenerProvider> {

    public static final String ID = "fresh-token-secret-mask";
    private static final Logger LOG = Logger.getLogger(SecretMaskingEventListenerFactory.class);
    private static final ObjectMapper MAPPER = new ObjectMapper();

    @Override
    public EventListenerProvider create(KeycloakSession session) {
        return new EventListenerProvider() {
            @Override
            public void onEvent(Event event) {
            }

            @Override
            public void onEvent(AdminEvent event, boolean includeRepresentation) {
                mask(session, event);
            }

            @Override
            public void close() {
            }
        };
    }

    static void mask(KeycloakSession session, AdminEvent event) {
        String rep = event.getRepresentation();
        if (rep == null || rep.isEmpty() || !(event.getResourceType() == ResourceType.IDENTITY_PROVIDER
                || event.getResourceType() == ResourceType.REALM)) {
            return;
        }
        String masked;
        try {
            JsonNode tree = MAPPER.readTree(rep);
            if (!IdpSecrets.maskRepresentation(tree)) {
                return;
            }
            masked = MAPPER.writeValueAsString(tree);
        } catch (Exception e) {
            return; // not JSON: nothing of ours
        }
        event.setRepresentation(masked);
        if (event.getId() == null) {
            return;
        }
        try {
            EntityManager em = JpaAccess.entityManager(session);
            em.createQuery("update AdminEventEntity e set e.representation = :r where e.id = :id")
                    .setParameter("r", masked).setParameter("id", event.getId()).executeUpdate();
        } catch (RuntimeException e) {
            LOG.warnf("fresh-token: could not mask an IdP secret in stored admin event %s (%s)", event.getId(),
                    e.getClass().getSimpleName());
        }
    }

    @Override
    public boolean isGlobal() {
        return true;
    }

    @Override
    public String getId() {
        return ID;
    }
}
