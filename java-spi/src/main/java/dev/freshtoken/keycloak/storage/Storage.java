package dev.freshtoken.keycloak.storage;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import org.jboss.logging.Logger;

import dev.freshtoken.keycloak.nativecore.Core;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.CoreRequest;
import dev.freshtoken.keycloak.nativecore.ErrorCode;
import dev.freshtoken.keycloak.nativecore.NativeLibrary;

/**
 * Encryption at rest of the stored token (docs/CONTRACT.md, "Encryption at rest"). The keys are
 * read by the native core from the key file named by the server-wide SPI option
 * {@code --spi-admin-realm-restapi-extension--fresh-token-storage--key-file}; Java only passes
 * the path, the mode and, per call, the row binding (realm id, Keycloak user id, IdP alias and the
 * user's id at the IdP). While encrypting, a plain value in a row is refused
 * ({@code storage_plaintext_row}) unless {@code --spi-admin-realm-restapi-extension--fresh-token-storage--allow-plaintext=true}
 * (a migration window).
 * Key material never passes through Java.
 */
public final class Storage {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    static final String KEY_FILE_OPTION = "key-file";
    static final String MODE_OPTION = "mode";
    static final String ALLOW_PLAINTEXT_OPTION = "allow-plaintext";

    private static volatile String keyFile;
    private static volatile String mode = "encrypt";
    private static volatile boolean allowPlaintext;
    private static volatile Map<String, String> info = Map.of("storageEncryption", "off");

    private Storage() {
    }

    /** From the factory's init(): where the keys are. Takes effect with {@link #load()}. */
    static void configure(String file, String m) {
        configure(file, m, false);
    }

    /** As {@link #configure(String, String)}; {@code allowPlain}: plain rows are used while encrypting (migration window). */
    static void configure(String file, String m, boolean allowPlain) {
        keyFile = file == null || file.isBlank() ? null : file.trim();
        mode = m == null || m.isBlank() ? "encrypt" : m.trim();
        allowPlaintext = allowPlain;
    }

    /** True when a key file is configured (encrypting or decrypt-only). */
    public static boolean configured() {
        return keyFile != null;
    }

    static String mode() {
        return mode;
    }

    static Map<String, String> info() {
        return info;
    }

    /** From the factory's postInit(): hands the key file to the core (which reads it). */
    static void load() {
        Map<String, String> m = new LinkedHashMap<>();
        if (keyFile == null) {
            if (NativeLibrary.ensureLoaded().state() == NativeLibrary.State.LOADED) {
                Core.call(CoreRequest.keyring(null, null, false)); // the core's default already; explicit so that a reload switches keys off
            }
            m.put("storageEncryption", "off");
            info = m;
            LOG.info("fresh-token: storage encryption is off (no key file configured); stored tokens are written plain");
            return;
        }
        m.put("storageKeyFile", keyFile);
        m.put("storageMode", mode);
        m.put("storageAllowPlaintext", Boolean.toString(allowPlaintext));
        if (NativeLibrary.ensureLoaded().state() != NativeLibrary.State.LOADED) {
            m.put("storageEncryption", "FAILED");
            m.put("storageProblem", "native core not available");
            info = m;
            LOG.error("fresh-token: storage keys NOT loaded: the native core is not available");
            return;
        }
        CoreAnswer answer = Core.call(CoreRequest.keyring(keyFile, mode, allowPlaintext));
        JsonNode ok = answer.ok();
        if (ok != null) {
            JsonNode ring = ok.path("keyring");
            m.put("storageEncryption", "decrypt-only".equals(ring.path("mode").asText()) ? "decrypt-only" : "on");
            m.put("storagePrimaryKey", ring.path("primary").asText(""));
            StringBuilder kids = new StringBuilder();
            for (Iterator<JsonNode> it = ring.path("kids").elements(); it.hasNext();) {
                kids.append(kids.length() == 0 ? "" : ",").append(it.next().asText());
            }
            m.put("storageKeyIds", kids.toString());
            for (String line : answer.diag()) {
                if (line.contains("can be read by")) {
                    LOG.warnf("fresh-token: %s", line);
                } else {
                    LOG.infof("fresh-token: %s", line);
                }
            }
        } else {
            String why = answer.description().isEmpty() ? "unknown problem" : answer.description();
            m.put("storageEncryption", "FAILED");
            m.put("storageProblem", why);
            LOG.errorf("fresh-token: storage keys NOT loaded, no stored token of our IdP types is read or written (storage_key_error): %s", why);
        }
        info = m;
    }

    /**
     * The row a stored value is bound to: realm id, Keycloak user id ({@code ""} only at a first
     * login, before the user exists; such a value is sealed again with the user right after),
     * IdP alias and the user's id at the IdP.
     */
    public static CoreRequest.Binding binding(String realmId, String userId, String alias, String subject) {
        return new CoreRequest.Binding(realmId, userId, alias, subject);
    }

    /** Thrown when a value cannot be converted; the message is the core's (no token values). */
    public static final class StorageException extends Exception {
        private final String code;

        StorageException(String code, String message) {
            super(message, null, false, false);
            this.code = code;
        }

        public String code() {
            return code;
        }
    }

    /** The result of a seal/unseal: the value to store and what happened. */
    public record Converted(String value, String action) {
        public boolean changed() {
            return !"unchanged".equals(action);
        }
    }

    /** {@code seal}: the value in its storage form now (encrypted with the first key while encrypting). */
    public static Converted seal(String realmId, String userId, String alias, String subject, String value, String previous) throws StorageException {
        return convert(CoreRequest.seal(value, binding(realmId, userId, alias, subject), previous));
    }

    /** {@code unseal}: the value plain (rollback). */
    static Converted unseal(String realmId, String userId, String alias, String subject, String value) throws StorageException {
        return convert(CoreRequest.unseal(value, binding(realmId, userId, alias, subject)));
    }

    /** True for a value in one of the core's sealed formats ({@code ftk1.}, {@code ftk2.}). */
    public static boolean isSealed(String value) {
        return value != null && (value.startsWith("ftk2.") || value.startsWith("ftk1."));
    }

    private static Converted convert(CoreRequest request) throws StorageException {
        CoreAnswer answer = Core.call(request);
        JsonNode ok = answer.ok();
        if (ok == null || !ok.path("store").isTextual()) {
            throw new StorageException(answer.isError() ? answer.code() : ErrorCode.INTERNAL_ERROR.code(),
                    answer.isError() && !answer.description().isEmpty() ? answer.description() : "The fresh-token core gave no answer.");
        }
        return new Converted(ok.get("store").asText(), ok.path("action").asText(""));
    }
}
