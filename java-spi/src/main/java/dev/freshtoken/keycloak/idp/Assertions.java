package dev.freshtoken.keycloak.idp;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.cert.X509Certificate;
import java.util.Base64;

import org.jboss.logging.Logger;
import org.keycloak.crypto.KeyUse;
import org.keycloak.crypto.KeyWrapper;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;

import dev.freshtoken.keycloak.nativecore.CoreRequest;

/**
 * Key material for certificate client authentication (private_key_jwt), handed to the core,
 * which signs the assertion (PS256 + x5t#S256 or RS256 + x5t). From PEM files named in the
 * IdP's settings, or else the realm's active RS256 key and its certificate: the key Keycloak's
 * own login code exchange signs with, so one certificate in the app registration serves both.
 */
public final class Assertions {

    private static final Logger LOG = Logger.getLogger(Assertions.class);

    /**
     * SPI option {@code --spi-admin-realm-restapi-extension--fresh-token-storage--assertion-key-dir}
     * (next to the other operator settings of ours, read by {@link FreshTokenStorageAdminFactory}):
     * the only directory key files may be read from, for every IdP of our types. Not set: key files off.
     */
    public static final String KEY_DIR_OPTION = "assertion-key-dir";
    static final String KEY_DIR_CLI = "--spi-admin-realm-restapi-extension--fresh-token-storage--" + KEY_DIR_OPTION;
    /** A PEM key or certificate is a few KiB; anything larger is not one. */
    static final long MAX_FILE_BYTES = 1 << 20;

    /** The placeholder for the realm's name: a directory per realm, so realms cannot name each other's keys. */
    static final String REALM_PLACEHOLDER = "{realm}";

    /** Real path of the key directory (no placeholder); null: key files are off or per realm. */
    private static volatile Path keyDir;
    /** The key directory as the operator wrote it (normalised), for the save-time check of paths through it. */
    private static volatile Path keyDirGiven;
    /** The operator's value with {@code {realm}}; null: one directory for all realms (or off). */
    private static volatile String keyDirTemplate;
    /** Why a configured directory cannot be used (shown in refusals); null: none. */
    private static volatile String keyDirProblem;

    private Assertions() {
    }

    /** A key or certificate file that may not be read: answered idp_misconfigured without a network call. */
    public static final class KeyFileRefused extends RuntimeException {
        private static final long serialVersionUID = 1L;

        KeyFileRefused(String message) {
            super(message, null, false, false);
        }
    }

    /**
     * Server start (FreshTokenStorageAdminFactory#init): the operator's key directory, or none.
     * With {@code {realm}} in it (e.g. {@code /etc/keycloak/keys/{realm}}) each realm has its own.
     */
    public static void configureKeyDir(String dir) {
        keyDir = null;
        keyDirGiven = null;
        keyDirTemplate = null;
        keyDirProblem = null;
        if (dir == null || dir.isBlank()) {
            return;
        }
        String d = dir.trim();
        try {
            if (d.contains(REALM_PLACEHOLDER)) {
                if (!Path.of(d.replace(REALM_PLACEHOLDER, "realm")).isAbsolute()) {
                    throw new IOException("not an absolute path");
                }
                keyDirTemplate = d;
                LOG.infof("fresh-token: certificate assertion key files may be read from %s only (one directory per realm)", d);
                return;
            }
            Path p = Path.of(d);
            if (!p.isAbsolute()) {
                throw new IOException("not an absolute path");
            }
            Path real = p.toRealPath();
            if (!Files.isDirectory(real)) {
                throw new IOException("not a directory");
            }
            keyDirGiven = p.normalize();
            keyDir = real;
            LOG.infof("fresh-token: certificate assertion key files may be read from %s only", real);
        } catch (IOException | RuntimeException e) {
            keyDirProblem = "the configured key directory '" + d + "' cannot be used (" + e.getMessage() + ")";
            LOG.errorf("fresh-token: %s=%s cannot be used (%s); certificate assertion key files are off",
                    KEY_DIR_CLI, d, e.getMessage());
        }
    }

    private static String off() {
        String problem = keyDirProblem;
        return "Key files are off: " + (problem != null ? problem
                : "the server operator has not named a key directory (" + KEY_DIR_CLI + ")")
                + ". Leave the key and certificate file settings empty to sign with the realm's RS256 key.";
    }

    /** The realm's key directory: {real path, path as configured}; refused when off or missing. */
    private static Path[] dirFor(String realmName, boolean atUse) {
        String template = keyDirTemplate;
        if (template == null) {
            Path dir = keyDir;
            if (dir == null) {
                throw refusal(atUse, off());
            }
            return new Path[] {dir, keyDirGiven != null ? keyDirGiven : dir};
        }
        if (realmName == null || realmName.isEmpty() || realmName.equals(".") || realmName.equals("..")
                || realmName.contains("/") || realmName.contains("\\") || realmName.indexOf('\0') >= 0) {
            throw refusal(atUse, "Key files are off for this realm: its name cannot be a directory name.");
        }
        Path given = Path.of(template.replace(REALM_PLACEHOLDER, realmName)).normalize();
        try {
            Path real = given.toRealPath();
            if (!Files.isDirectory(real)) {
                throw new IOException("not a directory");
            }
            return new Path[] {real, given};
        } catch (IOException e) {
            throw refusal(atUse, "Key files are off for this realm: the server operator has not created its key directory ("
                    + (atUse ? "see the server log" : given.toString()) + ").");
        }
    }

    private static RuntimeException refusal(boolean atUse, String message) {
        return atUse ? new KeyFileRefused(message) : new IllegalArgumentException(message);
    }

    /**
     * Save time (IdentityProviderModel#validate): a key or certificate file must be an absolute
     * path inside the operator's key directory (the realm's, with {@code {realm}}), and, if it
     * exists, its real path as well.
     */
    static void checkAtSave(String realmName, String file, String label) {
        if (file == null || file.isBlank()) {
            return;
        }
        Path[] dirs;
        try {
            dirs = dirFor(realmName, false);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(label + ": " + e.getMessage());
        }
        Path dir = dirs[0];
        Path given = dirs[1];
        Path p;
        try {
            p = Path.of(file.trim());
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(label + " is not a valid path");
        }
        if (!p.isAbsolute() || !(p.normalize().startsWith(dir) || p.normalize().startsWith(given))) {
            throw new IllegalArgumentException(label + " must be an absolute path of a file in the key directory set by "
                    + "the server operator (" + given + ")");
        }
        if (Files.exists(p)) {
            try {
                if (!p.toRealPath().startsWith(dir)) {
                    throw new IllegalArgumentException(label + " resolves (through a symbolic link) to a file outside the "
                            + "key directory set by the server operator (" + given + ")");
                }
            } catch (IOException e) {
                throw new IllegalArgumentException(label + " cannot be resolved: " + e.getClass().getSimpleName());
            }
        }
    }

    /** Use time: the file's real path must be a regular file inside the key directory's real path. */
    static Path resolveAtUse(String realmName, String file) {
        Path dir = dirFor(realmName, true)[0];
        Path real;
        try {
            real = Path.of(file).toRealPath();
        } catch (IOException | RuntimeException e) {
            throw new KeyFileRefused("The certificate assertion key or certificate file cannot be read ("
                    + e.getClass().getSimpleName() + ").");
        }
        if (!real.startsWith(dir)) {
            throw new KeyFileRefused("The certificate assertion key or certificate file resolves to a path outside the "
                    + "key directory set by the server operator; it is not read.");
        }
        if (!Files.isRegularFile(real)) {
            throw new KeyFileRefused("The certificate assertion key or certificate file is not a regular file.");
        }
        return real;
    }

    public static CoreRequest.Assertion forIdp(KeycloakSession session, FreshTokenConfig config) {
        if (!config.assertionKeyFile().isEmpty() || !config.assertionCertFile().isEmpty()) {
            RealmModel ctx = session.getContext().getRealm();
            String realmName = ctx == null ? null : ctx.getName();
            String keyPem = read(realmName, config.assertionKeyFile());
            return new CoreRequest.Assertion(config.assertionAlg(), LIFETIME_S, keyPem, read(realmName, config.assertionCertFile()));
        }
        RealmModel realm = session.getContext().getRealm();
        KeyWrapper key = session.keys().getActiveKey(realm, KeyUse.SIG, "RS256");
        if (key == null || key.getPrivateKey() == null || key.getCertificate() == null) {
            // The core answers idp_misconfigured for missing key material, without a network call.
            return new CoreRequest.Assertion(config.assertionAlg(), LIFETIME_S, null, null);
        }
        String keyPem = pem("PRIVATE KEY", key.getPrivateKey().getEncoded());
        String certPem = null;
        try {
            X509Certificate cert = key.getCertificate();
            certPem = pem("CERTIFICATE", cert.getEncoded());
        } catch (GeneralSecurityException e) {
            // leave cert_pem out: idp_misconfigured from the core
        }
        return new CoreRequest.Assertion(config.assertionAlg(), LIFETIME_S, keyPem, certPem);
    }

    /** Lifetime of our client assertions (seconds). */
    static final int LIFETIME_S = 300;

    private static String read(String realmName, String file) {
        if (file.isEmpty()) {
            return "";
        }
        Path real = resolveAtUse(realmName, file);
        try {
            if (Files.size(real) > MAX_FILE_BYTES) {
                throw new KeyFileRefused("The certificate assertion key or certificate file is larger than 1 MiB.");
            }
            return Files.readString(real, StandardCharsets.US_ASCII);
        } catch (IOException | RuntimeException e) {
            if (e instanceof KeyFileRefused k) {
                throw k;
            }
            return ""; // the core reports the unusable key or certificate as idp_misconfigured
        }
    }

    private static String pem(String type, byte[] der) {
        return "-----BEGIN " + type + "-----\n"
                + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der)
                + "\n-----END " + type + "-----\n";
    }
}
