package dev.freshtoken.keycloak.storage;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import dev.freshtoken.keycloak.nativecore.NativeCore;
import dev.freshtoken.keycloak.nativecore.NativeLibrary;

/** Encryption at rest through the real library: key file loading, seal/unseal, and a check op on a sealed row. */
class StorageBoundaryTest {

    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final String PLAIN = "{\"access_token\":\"at-secret-value\",\"refresh_token\":\"rt-secret-value\","
            + "\"accessTokenExpiration\":1800001000}";
    private static Path dir;

    @BeforeAll
    static void keys() throws Exception {
        File lib = new File(System.getProperty("freshtoken.test.native.dir", "../target/release"), NativeLibrary.LIBRARY_FILE);
        NativeLibrary.configurePath(lib.getAbsolutePath());
        assertEquals(NativeLibrary.State.LOADED, NativeLibrary.ensureLoaded().state());
        dir = Files.createTempDirectory("ftk-keys");
        byte[] key = new byte[32];
        new java.security.SecureRandom().nextBytes(key);
        Path file = Files.writeString(dir.resolve("keys"), "k1 " + Base64.getEncoder().encodeToString(key) + "\n");
        Storage.configure(file.toString(), "encrypt");
        Storage.load();
    }

    @AfterAll
    static void off() {
        Storage.configure(null, null);
        Storage.load(); // back to no keys for the other tests in this JVM
    }

    @Test
    void keysLoadAndTheOperationalInfoNamesThemWithoutMaterial() {
        assertEquals("on", Storage.info().get("storageEncryption"));
        assertEquals("k1", Storage.info().get("storageKeyIds"));
    }

    @Test
    void sealedValuesOpenOnlyForTheirRow() throws Exception {
        Storage.Converted sealed = Storage.seal("realm-1", "user-1", "entra", "oid-1", PLAIN, null);
        assertEquals("encrypted", sealed.action());
        assertTrue(sealed.value().startsWith("ftk2.k1."));
        assertFalse(sealed.value().contains("secret-value"));
        assertEquals(PLAIN, Storage.unseal("realm-1", "user-1", "entra", "oid-1", sealed.value()).value());
        Storage.StorageException e = assertThrows(Storage.StorageException.class,
                () -> Storage.unseal("realm-1", "user-1", "entra", "oid-2", sealed.value()));
        assertEquals("storage_binding_mismatch", e.code());
        assertFalse(e.getMessage().contains("secret-value"));
    }

    @Test
    void aCheckOnASealedRowServesThePlainToken() throws Exception {
        String sealed = Storage.seal("realm-1", "user-1", "entra", "oid-1", PLAIN, null).value();
        ObjectNode req = MAPPER.createObjectNode().put("v", NativeCore.CONTRACT_VERSION).put("op", "check").put("now", 1_800_000_000L).put("stored", sealed);
        req.set("binding", row("realm-1", "user-1", "entra", "oid-1"));
        JsonNode ok = MAPPER.readTree(NativeLibrary.call(req.toString())).path("ok");
        assertEquals("serve", ok.path("action").asText());
        assertEquals("at-secret-value", ok.path("response").path("access_token").asText());
        req.set("binding", row("realm-1", "user-1", "other", "oid-1"));
        JsonNode err = MAPPER.readTree(NativeLibrary.call(req.toString())).path("err");
        assertEquals("storage_binding_mismatch", err.path("code").asText());
        assertEquals(500, err.path("status").asInt());
    }

    private static ObjectNode row(String realm, String user, String alias, String subject) {
        ObjectNode b = MAPPER.createObjectNode();
        b.put("realm", realm).put("user", user).put("alias", alias).put("subject", subject);
        return b;
    }

    private static JsonNode call(String op, String stored, ObjectNode binding) throws Exception {
        ObjectNode req = MAPPER.createObjectNode().put("v", NativeCore.CONTRACT_VERSION).put("op", op).put("now", 1_800_000_000L).put("stored", stored);
        req.set("binding", binding);
        return MAPPER.readTree(NativeLibrary.call(req.toString()));
    }

    @Test
    void aSealedValueMovedToAnotherKeycloakUserOrRealmIsRefusedWithStorageBindingMismatchAndNothingIsWritten() throws Exception {
        String sealed = call("seal", PLAIN, row("realm-a", "user-1", "entra", "oid-1")).path("ok").path("store").asText();
        assertTrue(sealed.startsWith("ftk"), sealed);
        assertEquals("serve", call("check", sealed, row("realm-a", "user-1", "entra", "oid-1")).path("ok").path("action").asText());
        for (ObjectNode other : new ObjectNode[] {row("realm-a", "user-2", "entra", "oid-1"), row("realm-b", "user-1", "entra", "oid-1")}) {
            JsonNode a = call("check", sealed, other);
            assertEquals("storage_binding_mismatch", a.path("err").path("code").asText(), a.toString());
            assertFalse(a.path("err").has("store"), "nothing to write");
            assertFalse(a.toString().contains("secret-value"));
        }
    }

    @Test
    void aPlainRowWhileEncryptingIsRefusedUnlessPlainRowsAreAllowed() throws Exception {
        ObjectNode b = row("realm-a", "user-1", "entra", "oid-1");
        JsonNode refused = call("check", PLAIN, b);
        assertEquals("storage_plaintext_row", refused.path("err").path("code").asText(), refused.toString());
        assertFalse(refused.path("err").has("store"));
        // The bulk encrypt (seal) still converts it: that is the migration.
        assertEquals("encrypted", call("seal", PLAIN, b).path("ok").path("action").asText());
        ObjectNode ring = MAPPER.createObjectNode().put("v", NativeCore.CONTRACT_VERSION).put("op", "keyring").put("now", 0);
        ring.putObject("keyring").put("key_file", dir.resolve("keys").toString()).put("mode", "encrypt").put("allow_plaintext", true);
        assertTrue(MAPPER.readTree(NativeLibrary.call(ring.toString())).has("ok"));
        try {
            assertEquals("serve", call("check", PLAIN, b).path("ok").path("action").asText());
        } finally {
            Storage.load(); // back to the configured keys (plain rows refused)
        }
    }
}
