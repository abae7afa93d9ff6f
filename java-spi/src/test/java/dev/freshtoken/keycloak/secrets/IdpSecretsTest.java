package dev.freshtoken.keycloak.secrets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

/** The admin-event masking of our secret settings (issue 11 item 3). */
class IdpSecretsTest {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    @Test
    void adminEventRepresentationsOfOurIdpsLoseThePlainOboSecretButKeepVaultReferences() throws Exception {
        JsonNode idp = MAPPER.readTree("{\"alias\":\"entra\",\"providerId\":\"entra-oidc\",\"config\":"
                + "{\"oboClientSecret\":\"s3cret\",\"clientSecret\":\"**********\"}}");
        assertTrue(IdpSecrets.maskRepresentation(idp));
        assertEquals(IdpSecrets.MASK, idp.get("config").get("oboClientSecret").asText());
        assertFalse(idp.toString().contains("s3cret"));

        JsonNode realm = MAPPER.readTree("{\"identityProviders\":[{\"providerId\":\"fresh-oidc\",\"config\":"
                + "{\"oboClientSecret\":\"other\"}},{\"providerId\":\"entra-oidc\",\"config\":"
                + "{\"oboClientSecret\":\"${vault.obo}\"}},{\"providerId\":\"oidc\",\"config\":{\"oboClientSecret\":\"x\"}}]}");
        assertTrue(IdpSecrets.maskRepresentation(realm));
        assertFalse(realm.toString().contains("other"));
        assertTrue(realm.toString().contains("${vault.obo}"));
        assertTrue(realm.toString().contains("\"x\""), "not one of our types: left to Keycloak");

        JsonNode masked = MAPPER.readTree("{\"providerId\":\"entra-oidc\",\"config\":{\"oboClientSecret\":\"**********\"}}");
        assertFalse(IdpSecrets.maskRepresentation(masked));
    }

    @Test
    void plainSecretsAreNeitherEmptyNorTheMaskNorVaultReferences() {
        assertTrue(IdpSecrets.isPlainSecret("abc"));
        assertFalse(IdpSecrets.isPlainSecret(""));
        assertFalse(IdpSecrets.isPlainSecret(null));
        assertFalse(IdpSecrets.isPlainSecret("**********"));
        assertFalse(IdpSecrets.isPlainSecret("${vault.obo_secret}"));
        assertTrue(IdpSecrets.isPlainSecret("${vault.}x"));
    }
}
