package dev.freshtoken.keycloak.outbound;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.truststore.TruststoreProvider;

import dev.freshtoken.keycloak.nativecore.Core;
import dev.freshtoken.keycloak.nativecore.CoreAnswer;
import dev.freshtoken.keycloak.nativecore.CoreRequest;
import dev.freshtoken.keycloak.nativecore.ErrorCode;

/**
 * Outbound HTTP settings of the core, taken from Keycloak's own configuration so that our
 * calls to the IdP trust what Keycloak trusts and take the proxy Keycloak takes:
 * <ul>
 * <li>the certificates of Keycloak's truststore ({@code truststore-paths}) are converted once
 * to a PEM bundle held in memory and handed to the core once (op {@code trust}); IdP calls name it
 * by its SHA-256 ({@code ca_sha256}); the core adds it to the default roots. No file is written: a file in a shared temp folder could be
 * planted or swapped by another local user;</li>
 * <li>{@code spi-connections-http-client--default--proxy-mappings} ({@code hostRegex;proxyUri}
 * or {@code hostRegex;NO_PROXY}, first match wins) decides {@code proxy_url} per token URL;
 * without mappings the core uses HTTPS_PROXY/NO_PROXY from the environment, as Keycloak does.</li>
 * </ul>
 */
public final class Outbound {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    record Mapping(Pattern host, String proxy) {
    }

    private static volatile boolean initialized;
    private static volatile String caPem;
    /** SHA-256 (hex) under which the core holds {@link #caPem} after the {@code trust} op; null: not handed over. */
    private static volatile String caSha256;
    private static volatile List<Mapping> mappings = Collections.emptyList();

    private Outbound() {
    }

    public static void init(KeycloakSession session) {
        if (initialized) {
            return;
        }
        synchronized (Outbound.class) {
            if (initialized) {
                return;
            }
            mappings = readMappings();
            caPem = truststorePem(session);
            caSha256 = caPem == null ? null : handOver(caPem);
            initialized = true;
        }
    }

    /** Keycloak's truststore as a PEM bundle (in memory), or {@code null} when it holds no certificate. */
    static String caPem() {
        return caPem;
    }

    /**
     * The extra roots of an {@code idp} block: {@code ca_sha256} naming the bundle the core got
     * once with the {@code trust} op, or (when that failed) the bundle itself as {@code ca_pem}.
     */
    public static CoreRequest.Trust trust() {
        return new CoreRequest.Trust(caSha256, caSha256 != null ? null : caPem);
    }

    /** Hands the bundle to the core in memory (op {@code trust}); null when the core did not take it. */
    private static String handOver(String pem) {
        CoreAnswer a = Core.call(CoreRequest.trust(pem));
        JsonNode sha = a.isError() ? null : a.ok().path("ca_sha256");
        if (sha != null && sha.isTextual()) {
            return sha.asText();
        }
        if (ErrorCode.NATIVE_UNAVAILABLE.code().equals(a.code())) {
            return null; // every IdP call answers native_unavailable anyway
        }
        LOG.warnf("fresh-token: the native core refused Keycloak's truststore (%s): %s", a.isError() ? a.code() : "-", a.description());
        return null;
    }

    /** {@code null}: no mappings configured (environment decides); {@code ""}: direct; else the proxy URL. */
    public static String proxyFor(String tokenUrl) {
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

    private static String truststorePem(KeycloakSession session) {
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
            LOG.infof("fresh-token: IdP calls trust Keycloak's truststore (%d certificates, handed to the core in memory)", n);
            return pem.toString();
        } catch (java.security.GeneralSecurityException | RuntimeException e) {
            LOG.warnf("fresh-token: could not read Keycloak's truststore for IdP calls (%s); using the default roots",
                    e.getClass().getSimpleName());
            return null;
        }
    }
}
