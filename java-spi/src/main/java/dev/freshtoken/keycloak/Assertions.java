package dev.freshtoken.keycloak;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.cert.X509Certificate;
import java.util.Base64;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.keycloak.crypto.KeyUse;
import org.keycloak.crypto.KeyWrapper;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;

/**
 * Key material for certificate client authentication (private_key_jwt), handed to the core,
 * which signs the assertion (PS256 + x5t#S256 or RS256 + x5t). From PEM files named in the
 * IdP's settings, or else the realm's active RS256 key and its certificate: the key Keycloak's
 * own login code exchange signs with, so one certificate in the app registration serves both.
 */
final class Assertions {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    private Assertions() {
    }

    static ObjectNode forIdp(KeycloakSession session, FreshTokenConfig config) {
        ObjectNode a = MAPPER.createObjectNode();
        a.put("alg", config.assertionAlg());
        a.put("lifetime_s", 300);
        if (!config.assertionKeyFile().isEmpty() || !config.assertionCertFile().isEmpty()) {
            a.put("key_pem", read(config.assertionKeyFile()));
            a.put("cert_pem", read(config.assertionCertFile()));
            return a;
        }
        RealmModel realm = session.getContext().getRealm();
        KeyWrapper key = session.keys().getActiveKey(realm, KeyUse.SIG, "RS256");
        if (key == null || key.getPrivateKey() == null || key.getCertificate() == null) {
            // The core answers idp_misconfigured for missing key material, without a network call.
            return a;
        }
        a.put("key_pem", pem("PRIVATE KEY", key.getPrivateKey().getEncoded()));
        try {
            X509Certificate cert = key.getCertificate();
            a.put("cert_pem", pem("CERTIFICATE", cert.getEncoded()));
        } catch (GeneralSecurityException e) {
            // leave cert_pem out: idp_misconfigured from the core
        }
        return a;
    }

    private static String read(String file) {
        if (file.isEmpty()) {
            return "";
        }
        try {
            return Files.readString(Path.of(file), StandardCharsets.US_ASCII);
        } catch (IOException | RuntimeException e) {
            return ""; // the core reports the unusable key or certificate as idp_misconfigured
        }
    }

    private static String pem(String type, byte[] der) {
        return "-----BEGIN " + type + "-----\n"
                + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der)
                + "\n-----END " + type + "-----\n";
    }
}
