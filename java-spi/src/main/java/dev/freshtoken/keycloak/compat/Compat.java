package dev.freshtoken.keycloak.compat;

import java.lang.reflect.Method;

import org.keycloak.models.IdentityProviderModel;
import org.keycloak.models.ClientModel;
import org.keycloak.models.UserModel;
import org.keycloak.representations.AccessToken;
import org.keycloak.services.managers.AuthenticationManager;

/**
 * The few Keycloak calls whose signatures differ between the supported versions (26.4-26.7).
 * A direct call compiled against one version is a NoSuchMethodError on another, so these go
 * through reflection. tests/compat/LinkCheck.java finds such calls (make test-compat).
 * <ul>
 * <li>{@code IdentityProviderModel.isStoreToken()} returns {@code boolean} in 26.4 and
 * {@code Boolean} from 26.5 (the setter's parameter likewise);</li>
 * <li>{@code AuthenticationManager.AuthResult} is a class with {@code getToken()}/{@code getUser()}
 * in 26.4 and a record from 26.5, whose getters are deprecated for removal in 26.7: the record
 * accessor is used where it exists, the getter otherwise.</li>
 * </ul>
 */
public final class Compat {

    private Compat() {
    }

    /** Looked up on first use, so a problem here cannot break the other calls of this class. */
    private static final class Auth {
        static final Method TOKEN = accessor(AuthenticationManager.AuthResult.class, "token", "getToken");
        static final Method USER = accessor(AuthenticationManager.AuthResult.class, "user", "getUser");
        static final Method CLIENT = accessor(AuthenticationManager.AuthResult.class, "client", "getClient");
    }

    public static AccessToken token(AuthenticationManager.AuthResult auth) {
        return (AccessToken) invoke(Auth.TOKEN, auth);
    }

    public static UserModel user(AuthenticationManager.AuthResult auth) {
        return (UserModel) invoke(Auth.USER, auth);
    }

    public static ClientModel client(AuthenticationManager.AuthResult auth) {
        return (ClientModel) invoke(Auth.CLIENT, auth);
    }

    /** The first of the named no-argument public methods that exists. */
    private static Method accessor(Class<?> type, String... names) {
        for (String name : names) {
            try {
                return type.getMethod(name);
            } catch (NoSuchMethodException e) {
                // try the next name
            }
        }
        throw new IllegalStateException("no accessor " + String.join("/", names) + " on " + type.getName()
                + " in this Keycloak version");
    }

    private static Object invoke(Method m, Object target) {
        try {
            return m.invoke(target);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot call " + m.getName() + " on this Keycloak version", e);
        }
    }

    public static boolean isStoreToken(IdentityProviderModel model) {
        try {
            Object v = IdentityProviderModel.class.getMethod("isStoreToken").invoke(model);
            return v instanceof Boolean b && b;
        } catch (ReflectiveOperationException e) {
            return false;
        }
    }

    public static void setStoreToken(IdentityProviderModel model, boolean value) {
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
