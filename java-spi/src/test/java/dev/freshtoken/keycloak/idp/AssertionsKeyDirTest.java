package dev.freshtoken.keycloak.idp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Key files only from the operator's key directory (issue 11 item 2): save-time and use-time checks. */
class AssertionsKeyDirTest {

    @TempDir
    Path tmp;

    @AfterEach
    void off() {
        Assertions.configureKeyDir(null);
    }

    @Test
    void withoutAKeyDirectoryKeyFilesAreRefusedAtSaveAndAtUse() throws Exception {
        Path key = Files.writeString(tmp.resolve("key.pem"), "k");
        IllegalArgumentException save = assertThrows(IllegalArgumentException.class,
                () -> Assertions.checkAtSave("r1", key.toString(), "Key file"));
        assertTrue(save.getMessage().contains("Key files are off") && save.getMessage().contains("assertion-key-dir"),
                save.getMessage());
        Assertions.KeyFileRefused use = assertThrows(Assertions.KeyFileRefused.class,
                () -> Assertions.resolveAtUse("r1", key.toString()));
        assertTrue(use.getMessage().contains("Key files are off"), use.getMessage());
        Assertions.checkAtSave("r1", "", "Key file"); // empty: the realm key, always allowed
    }

    @Test
    void aPathOutsideTheKeyDirectoryIsRefusedAtSave() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("keys"));
        Path outside = Files.writeString(tmp.resolve("other.pem"), "k");
        Assertions.configureKeyDir(dir.toString());
        for (String p : new String[] {outside.toString(), dir + "/../other.pem", "keys/key.pem", "/etc/passwd"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Assertions.checkAtSave("r1", p, "Key file"), p);
            assertTrue(e.getMessage().contains("key directory"), e.getMessage());
        }
        Assertions.checkAtSave("r1", dir.resolve("key.pem").toString(), "Key file"); // inside, not there yet: fine
    }

    @Test
    void aSymlinkPointingOutIsRefusedAtSaveAndAtUse() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("keys"));
        Path inside = Files.writeString(dir.resolve("key.pem"), "k");
        Path outside = Files.writeString(tmp.resolve("other.pem"), "k");
        Path link = dir.resolve("link.pem");
        Files.createSymbolicLink(link, outside);
        Assertions.configureKeyDir(dir.toString());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Assertions.checkAtSave("r1", link.toString(), "Key file"));
        assertTrue(e.getMessage().contains("symbolic link"), e.getMessage());
        Assertions.KeyFileRefused use = assertThrows(Assertions.KeyFileRefused.class,
                () -> Assertions.resolveAtUse("r1", link.toString()));
        assertTrue(use.getMessage().contains("outside the key directory"), use.getMessage());
        assertEquals(inside.toRealPath(), Assertions.resolveAtUse("r1", inside.toString()));
    }

    @Test
    void aKeyDirectoryThatIsASymlinkIsResolvedOnce() throws Exception {
        Path real = Files.createDirectory(tmp.resolve("real-keys"));
        Path key = Files.writeString(real.resolve("key.pem"), "k");
        Path alias = Files.createSymbolicLink(tmp.resolve("keys"), real);
        Assertions.configureKeyDir(alias.toString());
        Assertions.checkAtSave("r1", alias.resolve("key.pem").toString(), "Key file"); // the operator's spelling is fine
        assertEquals(key.toRealPath(), Assertions.resolveAtUse("r1", alias.resolve("key.pem").toString()));
        assertThrows(Assertions.KeyFileRefused.class, () -> Assertions.resolveAtUse("r1", tmp.resolve("nope.pem").toString()));
    }

    @Test
    void withARealmPlaceholderEachRealmReadsOnlyItsOwnDirectory() throws Exception {
        Path a = Files.createDirectories(tmp.resolve("keys/realm-a"));
        Files.createDirectories(tmp.resolve("keys/realm-b"));
        Path keyOfA = Files.writeString(a.resolve("key.pem"), "k");
        Assertions.configureKeyDir(tmp.resolve("keys") + "/{realm}");
        Assertions.checkAtSave("realm-a", keyOfA.toString(), "Key file");
        assertEquals(keyOfA.toRealPath(), Assertions.resolveAtUse("realm-a", keyOfA.toString()));
        // Realm B's admin names realm A's key: refused at save and at use.
        IllegalArgumentException save = assertThrows(IllegalArgumentException.class,
                () -> Assertions.checkAtSave("realm-b", keyOfA.toString(), "Key file"));
        assertTrue(save.getMessage().contains("key directory"), save.getMessage());
        assertThrows(Assertions.KeyFileRefused.class, () -> Assertions.resolveAtUse("realm-b", keyOfA.toString()));
        // A realm without a directory, or whose name is not a directory name, has key files off.
        IllegalArgumentException none = assertThrows(IllegalArgumentException.class,
                () -> Assertions.checkAtSave("realm-c", tmp.resolve("keys/realm-c/key.pem").toString(), "Key file"));
        assertTrue(none.getMessage().contains("has not created its key directory"), none.getMessage());
        assertThrows(Assertions.KeyFileRefused.class, () -> Assertions.resolveAtUse("..", keyOfA.toString()));
    }
}
