package dev.freshtoken.keycloak.nativecore;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Cost of one JNI call of the fresh-path decision (goal 4 of the bench issue): the provider
 * asks the core {@code op=check} about a stored token that is still valid, and the core
 * answers {@code serve} with the response the app gets. The stored token is shaped like an
 * Entra ID token response as Keycloak's OIDC provider stores it (access token, id token and
 * refresh token of Entra's sizes), well over 2 KB.
 *
 * <p>Benchmarks:
 * <ul>
 *   <li>{@code jniCheckFresh}: {@code NativeLibrary.call(request)}: the JNI crossing, the
 *       core's parsing of the request and stored token, the decision and the answer JSON.</li>
 *   <li>{@code fullDecisionWithJackson}: what the provider does per fresh call around it:
 *       build the request with Jackson, call, parse the answer.</li>
 *   <li>{@code serveFresh}: the provider's fresh path since contract 2: {@code Core.serveFresh}, the
 *       stored token as UTF-8 bytes plus the row's binding in, the app's body bytes out
 *       (no envelope, no Jackson on either side).</li>
 *   <li>{@code jniVersionBaseline}: the smallest JNI round trip ({@code version()}).</li>
 * </ul>
 * Run by tests/bench/jmh.sh with {@code -Dfreshtoken.library.path=<abs .so>}.
 */
@State(Scope.Benchmark)
@BenchmarkMode({Mode.SampleTime})
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(1)
public class FreshPathBenchmark {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    String stored;
    String request;
    long now;

    @Setup(Level.Trial)
    public void setup() {
        NativeLibrary.Status s = NativeLibrary.ensureLoaded();
        if (s.state() != NativeLibrary.State.LOADED) {
            throw new IllegalStateException("native core not loaded: " + s.problem());
        }
        now = System.currentTimeMillis() / 1000;
        stored = entraShapedStoredToken(now);
        request = buildRequest(now, stored);
        String answer = NativeLibrary.call(request);
        if (!answer.contains("\"serve\"")) {
            throw new IllegalStateException("the core did not answer serve: " + answer.substring(0, Math.min(200, answer.length())));
        }
        byte[] served = Core.serveFresh(stored, now, 60, false, true, BINDING);
        if (served == null) {
            throw new IllegalStateException("serveFresh did not serve the fresh stored token");
        }
        System.out.println("stored token bytes: " + stored.getBytes(StandardCharsets.UTF_8).length
                + ", request bytes: " + request.getBytes(StandardCharsets.UTF_8).length
                + ", answer bytes: " + answer.getBytes(StandardCharsets.UTF_8).length);
    }

    @Benchmark
    public String jniCheckFresh() {
        return NativeLibrary.call(request);
    }

    @Benchmark
    public String fullDecisionWithJackson() throws Exception {
        String answer = NativeLibrary.call(buildRequest(now, stored));
        JsonNode ok = MAPPER.readTree(answer).get("ok");
        return ok.path("response").toString();
    }

    @Benchmark
    public byte[] serveFresh() {
        return Core.serveFresh(stored, now, 60, false, true, BINDING);
    }

    private static final CoreRequest.Binding BINDING = new CoreRequest.Binding("0b5c9a64-7d3e-4f59-9a43-2a6f1e1c0d01",
            "7f1c2b3a-0000-4000-8000-000000000001", "entra", "0a11ce00-0000-4000-8000-00000000a11c");

    @Benchmark
    public String jniVersionBaseline() {
        return NativeCore.version();
    }

    /** The same request TokenService builds for op=check on the V1 endpoint. */
    static String buildRequest(long now, String stored) {
        ObjectNode req = MAPPER.createObjectNode();
        req.put("v", NativeCore.CONTRACT_VERSION);
        req.put("op", "check");
        req.put("now", now);
        req.put("stored", stored);
        ObjectNode policy = req.putObject("policy");
        policy.put("min_validity_s", 60);
        policy.put("include_refresh_token", false);
        policy.put("include_id_token", true);
        return req.toString();
    }

    /** An Entra v2.0 token response (Graph token) as Keycloak's OIDC provider stores it. */
    static String entraShapedStoredToken(long now) {
        SplittableRandom rnd = new SplittableRandom(42);
        String tid = "11111111-1111-1111-1111-111111111111";
        String accessHeader = "{\"typ\":\"JWT\",\"nonce\":\"" + b64(rnd, 32) + "\",\"alg\":\"RS256\",\"x5t\":\"" + b64(rnd, 20)
                + "\",\"kid\":\"" + b64(rnd, 20) + "\"}";
        String accessClaims = "{\"aud\":\"00000003-0000-0000-c000-000000000000\",\"iss\":\"https://sts.windows.net/" + tid + "/\","
                + "\"iat\":" + (now - 300) + ",\"nbf\":" + (now - 300) + ",\"exp\":" + (now + 3600) + ","
                + "\"acct\":0,\"acr\":\"1\",\"aio\":\"" + b64(rnd, 60) + "\",\"amr\":[\"pwd\",\"mfa\"],"
                + "\"app_displayname\":\"Keycloak broker\",\"appid\":\"00000000-0000-0000-0000-0000000000c1\",\"appidacr\":\"1\","
                + "\"family_name\":\"Example\",\"given_name\":\"Alice\",\"idtyp\":\"user\",\"ipaddr\":\"203.0.113.7\","
                + "\"name\":\"Alice Example\",\"oid\":\"0a11ce00-0000-4000-8000-00000000a11c\",\"platf\":\"3\","
                + "\"puid\":\"10032001A2B3C4D5\",\"rh\":\"" + b64(rnd, 40) + "\",\"scp\":\"email openid profile User.Read\","
                + "\"signin_state\":[\"kmsi\"],\"sub\":\"" + b64(rnd, 32) + "\",\"tenant_region_scope\":\"EU\",\"tid\":\"" + tid + "\","
                + "\"unique_name\":\"alice@contoso.onmicrosoft.com\",\"upn\":\"alice@contoso.onmicrosoft.com\",\"uti\":\"" + b64(rnd, 16)
                + "\",\"ver\":\"1.0\",\"wids\":[\"b79fbf4d-3ef9-4689-8143-76b194e85509\"],\"xms_st\":{\"sub\":\"" + b64(rnd, 32)
                + "\"},\"xms_tcdt\":1600000000}";
        String accessToken = jwt(accessHeader, accessClaims, rnd);
        String idHeader = "{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"" + b64(rnd, 20) + "\"}";
        String idClaims = "{\"aud\":\"00000000-0000-0000-0000-0000000000c1\",\"iss\":\"https://login.microsoftonline.com/" + tid
                + "/v2.0\",\"iat\":" + (now - 300) + ",\"nbf\":" + (now - 300) + ",\"exp\":" + (now + 3600) + ","
                + "\"email\":\"alice@contoso.onmicrosoft.com\",\"name\":\"Alice Example\",\"nonce\":\"" + b64(rnd, 16) + "\","
                + "\"oid\":\"0a11ce00-0000-4000-8000-00000000a11c\",\"preferred_username\":\"alice@contoso.onmicrosoft.com\","
                + "\"rh\":\"" + b64(rnd, 40) + "\",\"sid\":\"" + java.util.UUID.nameUUIDFromBytes(new byte[] {1}) + "\",\"sub\":\""
                + b64(rnd, 32) + "\",\"tid\":\"" + tid + "\",\"uti\":\"" + b64(rnd, 16) + "\",\"ver\":\"2.0\"}";
        String idToken = jwt(idHeader, idClaims, rnd);
        String refreshToken = "1.AR" + b64(rnd, 900); // Entra refresh tokens: opaque, about 1.2 KB
        ObjectNode t = MAPPER.createObjectNode();
        t.put("access_token", accessToken);
        t.put("expires_in", 3599);
        t.put("refresh_expires_in", 0);
        t.put("refresh_token", refreshToken);
        t.put("token_type", "Bearer");
        t.put("id_token", idToken);
        t.put("not-before-policy", 0);
        t.put("scope", "email openid profile User.Read");
        t.put("ext_expires_in", 3599);
        t.put("accessTokenExpiration", now + 3599);
        return t.toString();
    }

    private static String jwt(String header, String claims, SplittableRandom rnd) {
        Base64.Encoder e = Base64.getUrlEncoder().withoutPadding();
        return e.encodeToString(header.getBytes(StandardCharsets.UTF_8)) + "."
                + e.encodeToString(claims.getBytes(StandardCharsets.UTF_8)) + "." + b64(rnd, 256);
    }

    private static String b64(SplittableRandom rnd, int bytes) {
        byte[] b = new byte[bytes];
        rnd.nextBytes(b);
        return Base64.getUrlEncoder().withoutPadding().encodeToString(b);
    }
}
