package dev.freshtoken.keycloak.nativecore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

/** ErrorCode against docs/CONTRACT.md's error table; the request builders against the envelope. */
class ContractCounterpartTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * docs/CONTRACT.md of this checkout: next to java-spi, or (when the module is built from a copy,
     * as tests/compat/run.sh does) in the checkout that holds the native library directory
     * (target/test-panic/release): the nearest ancestor of it with docs/CONTRACT.md.
     */
    private static Path contractDoc() {
        Path beside = Path.of("../docs/CONTRACT.md");
        if (Files.isRegularFile(beside)) {
            return beside;
        }
        String nativeDir = System.getProperty("freshtoken.test.native.dir", "../target/test-panic/release");
        for (Path d = Path.of(nativeDir).toAbsolutePath().normalize(); d != null; d = d.getParent()) {
            Path p = d.resolve("docs").resolve("CONTRACT.md");
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        throw new AssertionError("docs/CONTRACT.md not found next to java-spi nor above " + nativeDir);
    }

    /** The "Error codes (closed set)" table of docs/CONTRACT.md: code -> HTTP status. */
    private static Map<String, Integer> documented() throws Exception {
        String text = Files.readString(contractDoc());
        int start = text.indexOf("## Error codes");
        assertTrue(start >= 0, "docs/CONTRACT.md has an error code section");
        int end = text.indexOf("\n#", start + 3);
        Matcher m = Pattern.compile("^\\| `([a-z_]+)` \\| (\\d{3}) \\|", Pattern.MULTILINE)
                .matcher(text.substring(start, end < 0 ? text.length() : end));
        Map<String, Integer> out = new TreeMap<>();
        while (m.find()) {
            out.put(m.group(1), Integer.parseInt(m.group(2)));
        }
        return out;
    }

    @Test
    void the_contract_error_codes_are_exactly_the_documented_ones_with_their_status() throws Exception {
        Map<String, Integer> doc = documented();
        assertFalse(doc.isEmpty());
        Map<String, Integer> ours = new TreeMap<>();
        for (ErrorCode c : ErrorCode.values()) {
            if (c.inContract()) {
                ours.put(c.code(), c.status());
            }
        }
        assertEquals(doc, ours);
    }

    @Test
    void every_code_is_found_by_its_wire_name() {
        for (ErrorCode c : ErrorCode.values()) {
            assertEquals(c, ErrorCode.of(c.code()).orElseThrow());
        }
        assertTrue(ErrorCode.of("no_such_code").isEmpty());
    }

    @Test
    void requests_carry_the_one_contract_version_and_their_op() throws Exception {
        CoreRequest.Binding b = new CoreRequest.Binding("r", "u", "a", "s");
        CoreRequest.Policy p = new CoreRequest.Policy(60, false, true);
        for (CoreRequest r : new CoreRequest[] {CoreRequest.check(5, "x", b, p),
                CoreRequest.retrieve(5, "x", b, p, idp()), CoreRequest.inspect(5, "x", b),
                CoreRequest.keyring(null, null, false), CoreRequest.seal("x", b, null), CoreRequest.unseal("x", b),
                CoreRequest.trust("pem"), CoreRequest.appToken(5, "s", 60, idp())}) {
            JsonNode j = JSON.readTree(r.json());
            assertEquals(NativeCore.CONTRACT_VERSION, j.path("v").asInt(), r.op());
            assertEquals(r.op(), j.path("op").asText());
        }
        JsonNode check = JSON.readTree(CoreRequest.check(5, "x", b, p).json());
        assertEquals("u", check.path("binding").path("user").asText());
        assertEquals(60, check.path("policy").path("min_validity_s").asInt());
        assertTrue(check.path("policy").path("include_id_token").asBoolean());
        assertFalse(check.has("idp"));
    }

    private static CoreRequest.Idp idp() {
        return new CoreRequest.Idp("https://idp/token", "app", "client_secret_post", "r", "i", "entra", "SECRET-SAMPLE", null,
                "", 5000, 10000, 3, 1048576, new CoreRequest.Trust(null, null), null);
    }

    @Test
    void the_idp_block_carries_either_the_secret_or_the_assertion() throws Exception {
        JsonNode secret = JSON.readTree(CoreRequest.retrieve(5, "x", new CoreRequest.Binding("r", "u", "a", "s"),
                new CoreRequest.Policy(0, false, false), idp()).json()).path("idp");
        assertEquals("SECRET-SAMPLE", secret.path("client_secret").asText());
        assertFalse(secret.has("assertion"));
        assertFalse(secret.has("ca_pem") || secret.has("ca_sha256") || secret.has("proxy_url"));
        CoreRequest.Idp withKey = new CoreRequest.Idp("https://idp/token", "app", "private_key_jwt", "r", "i", "oidc", null,
                new CoreRequest.Assertion("PS256", 300, "KEY-SAMPLE", null), "", 5000, 10000, 3, 1048576,
                new CoreRequest.Trust("abc", "PEM"), "http://proxy:3128");
        JsonNode key = JSON.readTree(CoreRequest.appToken(5, "s", 60, withKey).json()).path("idp");
        assertFalse(key.has("client_secret"));
        assertEquals("KEY-SAMPLE", key.path("assertion").path("key_pem").asText());
        assertFalse(key.path("assertion").has("cert_pem"));
        assertEquals("abc", key.path("ca_sha256").asText());
        assertFalse(key.has("ca_pem"), "the hash wins over the bundle");
        assertEquals("http://proxy:3128", key.path("proxy_url").asText());
        assertFalse(withKey.toString().contains("KEY-SAMPLE"));
        assertFalse(idp().toString().contains("SECRET-SAMPLE"));
    }

    @Test
    void secrets_never_reach_to_string() {
        CoreRequest.Obo obo = new CoreRequest.Obo("mid", "SECRET-SAMPLE", "client_secret_post", "api://x/.default", "s", "entra_obo");
        CoreRequest r = CoreRequest.check(5, "STORED-SAMPLE", new CoreRequest.Binding("r", "u", "a", "s"),
                new CoreRequest.Policy(0, false, false)).obo(obo);
        assertFalse(obo.toString().contains("SECRET-SAMPLE"));
        assertFalse(r.toString().contains("SECRET-SAMPLE"));
        assertFalse(r.toString().contains("STORED-SAMPLE"));
        assertTrue(r.json().contains("SECRET-SAMPLE"), "the secret is in the request itself");
        assertFalse(CoreAnswer.parse("{\"ok\":{\"action\":\"serve\",\"response\":{\"access_token\":\"AT-SAMPLE\"}}}")
                .toString().contains("AT-SAMPLE"));
    }
}
