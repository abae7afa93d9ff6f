package dev.freshtoken.keycloak.nativecore;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.security.CodeSource;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.jboss.logging.Logger;

/**
 * The one holder of the native library. Loading is lazy (first use or the factory's
 * postInit), never in a static initializer: Keycloak instantiates factories at build time.
 *
 * <p>Search order: an explicit path (SPI option {@code library-path}, system property
 * {@code freshtoken.library.path}, environment {@code FRESH_TOKEN_LIBRARY}), then the
 * directory holding this provider's JAR, then {@code $kc.home.dir/providers}.
 */
public final class NativeLibrary {

    private static final Logger LOG = Logger.getLogger(NativeLibrary.class);
    private static final ObjectMapper MAPPER = new ObjectMapper();

    public static final String LIBRARY_FILE = System.mapLibraryName("fresh_token_core");

    public enum State { NOT_LOADED, LOADED, FAILED }

    /** Immutable snapshot of the load state, shown in operational info. */
    public record Status(State state, String path, String coreVersion, String problem) {
        public Map<String, String> asInfo() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("providerVersion", providerVersion());
            m.put("contractVersion", Integer.toString(NativeCore.CONTRACT_VERSION));
            m.put("nativeLibraryState", state.name());
            m.put("nativeLibraryPath", path == null ? "" : path);
            m.put("nativeCoreVersion", coreVersion == null ? "" : coreVersion);
            if (problem != null) {
                m.put("nativeLibraryProblem", problem);
            }
            return m;
        }
    }

    private static volatile Status status = new Status(State.NOT_LOADED, null, null, null);
    private static volatile String configuredPath;
    private static volatile String providerVersion;

    private NativeLibrary() {
    }

    /** The SPI option {@code library-path}, if any; takes effect on the next load attempt. */
    public static void configurePath(String path) {
        configuredPath = (path == null || path.isBlank()) ? null : path.trim();
    }

    public static Status status() {
        return status;
    }

    /** Loads the library once; later calls return the recorded outcome. */
    public static Status ensureLoaded() {
        Status s = status;
        if (s.state() != State.NOT_LOADED) {
            return s;
        }
        synchronized (NativeLibrary.class) {
            if (status.state() == State.NOT_LOADED) {
                status = load();
                Status r = status;
                if (r.state() == State.LOADED) {
                    LOG.infof("fresh-token: native core %s loaded from %s (contract %d)",
                            r.coreVersion(), r.path(), NativeCore.CONTRACT_VERSION);
                } else {
                    LOG.errorf("fresh-token: native core NOT available: %s. Token calls on entra-oidc/fresh-oidc "
                            + "identity providers answer 'native_unavailable' until this is fixed and Keycloak restarted.",
                            r.problem());
                }
            }
            return status;
        }
    }

    /** Calls the core; throws {@link NativeUnavailableException} when it is not loaded. */
    public static String call(String requestJson) {
        Status s = ensureLoaded();
        if (s.state() != State.LOADED) {
            throw new NativeUnavailableException(s.problem());
        }
        return NativeCore.call(requestJson);
    }

    /** {@link NativeCore#serveFresh}; throws {@link NativeUnavailableException} when the core is not loaded. */
    public static byte[] serveFresh(byte[] stored, long now, int minValidity, int flags, String realm, String user,
                                    String alias, String subject) {
        Status s = ensureLoaded();
        if (s.state() != State.LOADED) {
            throw new NativeUnavailableException(s.problem());
        }
        return NativeCore.serveFresh(stored, now, minValidity, flags, realm, user, alias, subject);
    }

    /** Only for tests of the JNI boundary. */
    public static String panicForTest() {
        Status s = ensureLoaded();
        if (s.state() != State.LOADED) {
            throw new NativeUnavailableException(s.problem());
        }
        return NativeCore.panicForTest();
    }

    private static Status load() {
        List<File> candidates = candidates();
        List<String> tried = new ArrayList<>();
        for (File f : candidates) {
            f = canonical(f);
            tried.add(f.getPath());
            if (!f.isFile()) {
                continue;
            }
            String path = f.getAbsolutePath();
            try {
                System.load(path);
            } catch (Throwable t) { // UnsatisfiedLinkError, SecurityException
                return new Status(State.FAILED, path, null,
                        "cannot load " + path + ": " + t.getClass().getSimpleName() + ": " + t.getMessage());
            }
            try {
                JsonNode v = MAPPER.readTree(NativeCore.version());
                String coreVersion = v.path("version").asText(null);
                int contract = v.path("contract").asInt(-1);
                if (contract != NativeCore.CONTRACT_VERSION || !providerVersion().equals(coreVersion)) {
                    return new Status(State.FAILED, path, coreVersion,
                            "version mismatch: provider JAR " + providerVersion() + " (contract "
                                    + NativeCore.CONTRACT_VERSION + ") but native core " + coreVersion
                                    + " (contract " + contract + "); install the JAR and the library of the same release");
                }
                return new Status(State.LOADED, path, coreVersion, null);
            } catch (Throwable t) {
                return new Status(State.FAILED, path, null,
                        "native library at " + path + " is not a usable fresh-token core: "
                                + t.getClass().getSimpleName() + ": " + t.getMessage());
            }
        }
        return new Status(State.FAILED, null, null, LIBRARY_FILE + " not found; looked in " + String.join(", ", tried));
    }

    private static List<File> candidates() {
        List<File> out = new ArrayList<>();
        String explicit = firstNonBlank(configuredPath, System.getProperty("freshtoken.library.path"),
                System.getenv("FRESH_TOKEN_LIBRARY"));
        if (explicit != null) {
            File f = new File(explicit);
            out.add(f.isDirectory() ? new File(f, LIBRARY_FILE) : f);
            return out; // an explicit setting is never second-guessed
        }
        File jarDir = jarDirectory();
        if (jarDir != null) {
            out.add(new File(jarDir, LIBRARY_FILE));
        }
        String home = System.getProperty("kc.home.dir");
        if (home != null) {
            File f = new File(new File(home, "providers"), LIBRARY_FILE);
            if (!out.stream().map(NativeLibrary::canonical).toList().contains(canonical(f))) {
                out.add(f);
            }
        }
        return out;
    }

    private static File jarDirectory() {
        try {
            CodeSource cs = NativeLibrary.class.getProtectionDomain().getCodeSource();
            if (cs == null || cs.getLocation() == null) {
                return null;
            }
            File f = new File(cs.getLocation().toURI());
            return f.isFile() ? f.getParentFile() : f;
        } catch (URISyntaxException | IllegalArgumentException | SecurityException e) {
            return null;
        }
    }

    private static File canonical(File f) {
        try {
            return f.getCanonicalFile();
        } catch (IOException | SecurityException e) {
            return f.getAbsoluteFile();
        }
    }

    private static String firstNonBlank(String... values) {
        for (String v : values) {
            if (v != null && !v.isBlank()) {
                return v.trim();
            }
        }
        return null;
    }

    public static String providerVersion() {
        String v = providerVersion;
        if (v == null) {
            Properties p = new Properties();
            try (InputStream in = NativeLibrary.class.getResourceAsStream("/fresh-token.properties")) {
                if (in != null) {
                    p.load(in);
                }
            } catch (IOException ignored) {
                // fall through to "unknown"
            }
            v = p.getProperty("version", "unknown");
            providerVersion = v;
        }
        return v;
    }
}
