package dev.freshtoken.keycloak;

import java.lang.reflect.Method;

import org.keycloak.models.IdentityProviderModel;

/**
 * The few Keycloak model calls whose signatures differ between 26.4 and 26.7
 * ({@code isStoreToken()} returns {@code boolean} in 26.4 and {@code Boolean} from 26.5).
 * A direct call compiled against one version is a NoSuchMethodError on the other.
 */
final class Compat {

    private Compat() {
    }

    static boolean isStoreToken(IdentityProviderModel model) {
        try {
            Object v = IdentityProviderModel.class.getMethod("isStoreToken").invoke(model);
            return v instanceof Boolean b && b;
        } catch (ReflectiveOperationException e) {
            return false;
        }
    }

    static void setStoreToken(IdentityProviderModel model, boolean value) {
        for (Method m : IdentityProviderModel.class.getMethods()) {
            if (m.getName().equals("setStoreToken") && m.getParameterCount() == 1) {
                try {
                    m.invoke(model, value); // boxes or unboxes as the parameter type needs
                    return;
                } catch (ReflectiveOperationException e) {
                    throw new IllegalStateException("cannot set storeToken on this Keycloak version", e);
                }
            }
        }
        throw new IllegalStateException("cannot set storeToken on this Keycloak version");
    }
}
