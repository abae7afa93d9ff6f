package dev.freshtoken.keycloak.telemetry;

import java.lang.reflect.Field;
import java.lang.reflect.Method;

import org.jboss.logging.Logger;
import org.keycloak.events.EventBuilder;

/**
 * The event of Keycloak's broker token endpoint, so that our details land on the event Keycloak
 * records itself (never a second one). Reflection on a private field: if a version changes it,
 * {@link #current()} answers null and Telemetry warns once.
 */
final class BrokerEventHook {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    private BrokerEventHook() {
    }

    private static final String BROKER_SERVICE = "org.keycloak.services.resources.IdentityBrokerService";
    private static volatile Method currentRequest;
    private static volatile Method endpointInstance;
    private static volatile Field eventField;
    private static volatile boolean hookUnavailable;

    /**
     * The {@link EventBuilder} of Keycloak's {@code IdentityBrokerService} serving this request
     * (its private field {@code event}, in 26.4 to 26.7), reached through RESTEasy Reactive's
     * current request; null when that is not possible.
     */
    static EventBuilder current() {
        if (hookUnavailable) {
            return null;
        }
        try {
            if (currentRequest == null) {
                ClassLoader cl = BrokerEventHook.class.getClassLoader();
                Class<?> crm = Class.forName("org.jboss.resteasy.reactive.server.core.CurrentRequestManager", false, cl);
                Class<?> ctx = Class.forName("org.jboss.resteasy.reactive.server.core.ResteasyReactiveRequestContext", false, cl);
                Class<?> broker = Class.forName(BROKER_SERVICE, false, cl);
                Field f = broker.getDeclaredField("event");
                if (f.getType() != EventBuilder.class) {
                    throw new NoSuchFieldException("event is not an EventBuilder");
                }
                f.setAccessible(true);
                eventField = f;
                endpointInstance = ctx.getMethod("getEndpointInstance");
                currentRequest = crm.getMethod("get");
            }
            Object ctx = currentRequest.invoke(null);
            Object instance = ctx == null ? null : endpointInstance.invoke(ctx);
            if (instance == null || !eventField.getDeclaringClass().isInstance(instance)) {
                return null;
            }
            return (EventBuilder) eventField.get(instance);
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            hookUnavailable = true;
            LOG.debugf("fresh-token: broker event hook unavailable (%s)", e.getClass().getSimpleName());
            return null;
        }
    }
}
