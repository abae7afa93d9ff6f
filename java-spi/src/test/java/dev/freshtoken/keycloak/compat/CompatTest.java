package dev.freshtoken.keycloak.compat;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.keycloak.models.IdentityProviderModel;
import org.keycloak.representations.AccessToken;
import org.keycloak.services.managers.AuthenticationManager;

/**
 * The version-tolerant calls on the compile version (26.7). That the same JAR links on 26.4 and
 * 26.5 is checked by tests/compat (LinkCheck and the end-to-end runs).
 */
class CompatTest {

    @Test
    void storeTokenRoundTripsThroughTheReflectiveSetterAndGetter() {
        IdentityProviderModel model = new IdentityProviderModel();
        Compat.setStoreToken(model, true);
        assertTrue(Compat.isStoreToken(model));
        Compat.setStoreToken(model, false);
        assertFalse(Compat.isStoreToken(model));
    }

    @Test
    void authResultTokenAndUserAreReadWhicheverAccessorTheVersionHas() {
        AccessToken token = new AccessToken();
        AuthenticationManager.AuthResult auth = new AuthenticationManager.AuthResult(null, null, token, null);
        assertSame(token, Compat.token(auth));
        assertNull(Compat.user(auth));
    }
}
