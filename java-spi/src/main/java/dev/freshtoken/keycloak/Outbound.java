package dev.freshtoken.keycloak;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.regex.Pattern;

import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.truststore.TruststoreProvider;

/**
 * Outbound HTTP settings of the core, taken from Keycloak's own configuration so that our
 * calls to the IdP trust what Keycloak trusts and take the proxy Keycloak takes:
 * <ul>
 * <li>the certificates of Keycloak's truststore ({@code truststore-paths}) are exported once
 * to a PEM file whose path is passed to the core as {@code ca_file} (added to the default
 * roots);</li>
 * <li>{@code spi-connections-http-client--default--proxy-mappings} ({@code hostRegex;proxyUri}
 * or {@code hostRegex;NO_PROXY}, first match wins) decides {@code proxy_url} per token URL;
 * without mappings the core uses HTTPS_PROXY/NO_PROXY from the environment, as Keycloak does.</li>
 * </ul>
 */
final class Outbound {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    record Mapping(Pattern host, String proxy) {
    }

    private static volatile boolean initialized;
    private static volatile String caFile;
    private static volatile List<Mapping> mappings = Collections.emptyList();

    private Outbound() {
    }

    static void init(KeycloakSession session) {
        if (initialized) {
            return;
        }
        synchronized (Outbound.class) {
            if (initialized) {
                return;
            }
            mappings = readMappings();
            caFile = exportTruststore(session);
            initialized = true;
        }
    }

    static String caFile() {
        return caFile;
    }

    /** {@code null}: no mappings configured (environment decides); {@code ""}: direct; else the proxy URL. */
    static String proxyFor(String tokenUrl) {
        List<Mapping> m = mappings;
        if (m.isEmpty() || tokenUrl == null) {
            return null;
        }
        String host;
        try {
            host = URI.create(tokenUrl).getHost();
        } catch (IllegalArgumentException e) {
            return null;
        }
        if (host == null) {
            return null;
        }
        for (Mapping mapping : m) {
            if (mapping.host().matcher(host).matches()) {
                return mapping.proxy();
            }
        }
        return "";
    }

    private static List<Mapping> readMappings() {
        String[] raw;
        try {
            Config.Scope scope = Config.scope("connectionsHttpClient", "default");
            raw = scope == null ? null : scope.getArray("proxy-mappings");
        } catch (RuntimeException e) {
            raw = null;
        }
        if (raw == null || raw.length == 0) {
            return Collections.emptyList();
        }
        List<Mapping> out = new ArrayList<>();
        for (String entry : raw) {
            if (entry == null || entry.isBlank()) {
                continue;
            }
            int i = entry.indexOf(';');
            if (i <= 0) {
                LOG.warnf("fresh-token: ignoring proxy mapping without ';' (expected hostRegex;proxyUri)");
                continue;
            }
            String proxy = entry.substring(i + 1).trim();
            out.add(new Mapping(Pattern.compile(entry.substring(0, i).trim()), "NO_PROXY".equals(proxy) ? "" : proxy));
        }
        LOG.infof("fresh-token: using Keycloak's %d outgoing proxy mapping(s)", out.size());
        return List.copyOf(out);
    }

    private static String exportTruststore(KeycloakSession session) {
        try {
            TruststoreProvider provider = session.getProvider(TruststoreProvider.class);
            KeyStore ks = provider == null ? null : provider.getTruststore();
            if (ks == null) {
                return null;
            }
            StringBuilder pem = new StringBuilder();
            int n = 0;
            for (String alias : Collections.list(ks.aliases())) {
                Certificate c = ks.getCertificate(alias);
                if (c instanceof X509Certificate x) {
                    pem.append("-----BEGIN CERTIFICATE-----\n")
                            .append(Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(x.getEncoded()))
                            .append("\n-----END CERTIFICATE-----\n");
                    n++;
                }
            }
            if (n == 0) {
                return null;
            }
            byte[] bytes = pem.toString().getBytes(StandardCharsets.US_ASCII);
            String name = "fresh-token-ca-" + HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes), 0, 8) + ".pem";
            File target = new File(System.getProperty("java.io.tmpdir"), name);
            if (!target.isFile()) {
                File tmp = File.createTempFile("fresh-token-ca", ".pem", target.getParentFile());
                Files.write(tmp.toPath(), bytes);
                Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            LOG.infof("fresh-token: IdP calls trust Keycloak's truststore (%d certificates, exported to %s)", n, target);
            return target.getAbsolutePath();
        } catch (IOException | java.security.GeneralSecurityException | RuntimeException e) {
            LOG.warnf("fresh-token: could not export Keycloak's truststore for IdP calls (%s); using the default roots",
                    e.getClass().getSimpleName());
            return null;
        }
    }
}
