package dev.freshtoken.keycloak;

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
                () -> Assertions.checkAtSave(key.toString(), "Key file"));
        assertTrue(save.getMessage().contains("Key files are off") && save.getMessage().contains("assertion-key-dir"),
                save.getMessage());
        Assertions.KeyFileRefused use = assertThrows(Assertions.KeyFileRefused.class,
                () -> Assertions.resolveAtUse(key.toString()));
        assertTrue(use.getMessage().contains("Key files are off"), use.getMessage());
        Assertions.checkAtSave("", "Key file"); // empty: the realm key, always allowed
    }

    @Test
    void aPathOutsideTheKeyDirectoryIsRefusedAtSave() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("keys"));
        Path outside = Files.writeString(tmp.resolve("other.pem"), "k");
        Assertions.configureKeyDir(dir.toString());
        for (String p : new String[] {outside.toString(), dir + "/../other.pem", "keys/key.pem", "/etc/passwd"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Assertions.checkAtSave(p, "Key file"), p);
            assertTrue(e.getMessage().contains("key directory"), e.getMessage());
        }
        Assertions.checkAtSave(dir.resolve("key.pem").toString(), "Key file"); // inside, not there yet: fine
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
                () -> Assertions.checkAtSave(link.toString(), "Key file"));
        assertTrue(e.getMessage().contains("symbolic link"), e.getMessage());
        Assertions.KeyFileRefused use = assertThrows(Assertions.KeyFileRefused.class,
                () -> Assertions.resolveAtUse(link.toString()));
        assertTrue(use.getMessage().contains("outside the key directory"), use.getMessage());
        assertEquals(inside.toRealPath(), Assertions.resolveAtUse(inside.toString()));
    }

    @Test
    void aKeyDirectoryThatIsASymlinkIsResolvedOnce() throws Exception {
        Path real = Files.createDirectory(tmp.resolve("real-keys"));
        Path key = Files.writeString(real.resolve("key.pem"), "k");
        Path alias = Files.createSymbolicLink(tmp.resolve("keys"), real);
        Assertions.configureKeyDir(alias.toString());
        Assertions.checkAtSave(alias.resolve("key.pem").toString(), "Key file"); // the operator's spelling is fine
        assertEquals(key.toRealPath(), Assertions.resolveAtUse(alias.resolve("key.pem").toString()));
        assertThrows(Assertions.KeyFileRefused.class, () -> Assertions.resolveAtUse(tmp.resolve("nope.pem").toString()));
    }
}
