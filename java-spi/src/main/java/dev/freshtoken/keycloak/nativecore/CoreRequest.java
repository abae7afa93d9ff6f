package dev.freshtoken.keycloak.nativecore;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The request envelope of docs/CONTRACT.md, one static builder per op. The only place that
 * writes the contract version ({@link NativeCore#CONTRACT_VERSION}) and the op names; send it
 * with {@link Core#call(CoreRequest)}. No secret reaches {@link #toString()}: it names the op only.
 */
public final class CoreRequest {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    /** The row a stored value is bound to (CONTRACT.md, "binding"); {@code ""} for an unknown part. */
    public record Binding(String realm, String user, String alias, String subject) {
        ObjectNode json() {
            ObjectNode b = MAPPER.createObjectNode();
            b.put("realm", realm == null ? "" : realm);
            b.put("user", user == null ? "" : user);
            b.put("alias", alias == null ? "" : alias);
            b.put("subject", subject == null ? "" : subject);
            return b;
        }

        @Override
        public String toString() {
            return "Binding[realm=" + realm + ", user=" + user + ", alias=" + alias + "]";
        }
    }

    /** What the answer may contain ({@code policy}). */
    public record Policy(int minValiditySeconds, boolean includeRefreshToken, boolean includeIdToken) {
    }

    /** A token for another resource of the same IdP ({@code resource}). */
    public record Resource(String scope, String refreshScope) {
    }

    /** The on-behalf-of block ({@code obo}); the secret never reaches toString. */
    public record Obo(String clientId, String clientSecret, String clientAuth, String assertionScope, String scope, String mode) {
        @Override
        public String toString() {
            return "Obo[clientId=" + clientId + ", scope=" + scope + ", mode=" + mode + "]";
        }
    }

    /** Client authentication with a certificate ({@code idp.assertion}); a null PEM is left out. */
    public record Assertion(String alg, int lifetimeSeconds, String keyPem, String certPem) {
        ObjectNode json() {
            ObjectNode a = MAPPER.createObjectNode();
            a.put("alg", alg);
            a.put("lifetime_s", lifetimeSeconds);
            if (keyPem != null) {
                a.put("key_pem", keyPem);
            }
            if (certPem != null) {
                a.put("cert_pem", certPem);
            }
            return a;
        }

        @Override
        public String toString() {
            return "Assertion[alg=" + alg + "]";
        }
    }

    /** Extra roots for the IdP's TLS: the hash of the bundle the core got with {@code trust}, or the bundle itself. */
    public record Trust(String caSha256, String caPem) {
    }

    /**
     * The IdP block ({@code idp}) of {@code retrieve} and {@code app_token}: where and how to ask the
     * IdP. Exactly one of {@code clientSecret} / {@code assertion} is set, per {@code clientAuth}.
     */
    public record Idp(String tokenUrl, String clientId, String clientAuth, String realmId, String idpId, String kind,
                      String clientSecret, Assertion assertion, String refreshScope, int connectTimeoutMs, int timeoutMs,
                      int maxAttempts, int maxBodyBytes, Trust trust, String proxyUrl) {
        ObjectNode json() {
            ObjectNode idp = MAPPER.createObjectNode();
            idp.put("token_url", tokenUrl);
            idp.put("client_id", clientId);
            idp.put("client_auth", clientAuth);
            idp.put("realm_id", realmId); // app_token cache key
            idp.put("idp_id", idpId);
            idp.put("kind", kind);
            if (assertion != null) {
                idp.set("assertion", assertion.json());
            } else {
                idp.put("client_secret", clientSecret);
            }
            idp.put("refresh_scope", refreshScope);
            idp.put("connect_timeout_ms", connectTimeoutMs);
            idp.put("timeout_ms", timeoutMs);
            idp.put("max_attempts", maxAttempts);
            idp.put("max_body_bytes", maxBodyBytes);
            if (trust != null && trust.caSha256() != null) {
                idp.put("ca_sha256", trust.caSha256());
            } else if (trust != null && trust.caPem() != null) {
                idp.put("ca_pem", trust.caPem());
            }
            if (proxyUrl != null) {
                idp.put("proxy_url", proxyUrl);
            }
            return idp;
        }

        @Override
        public String toString() {
            return "Idp[tokenUrl=" + tokenUrl + ", clientId=" + clientId + ", clientAuth=" + clientAuth + ", kind=" + kind + "]";
        }
    }

    private final String op;
    private final ObjectNode root = MAPPER.createObjectNode();

    private CoreRequest(String op, long now) {
        this.op = op;
        root.put("v", NativeCore.CONTRACT_VERSION).put("op", op).put("now", now);
    }

    /** {@code check}: may the stored token be served as it is (no network, no secrets). */
    public static CoreRequest check(long now, String stored, Binding binding, Policy policy) {
        return new CoreRequest("check", now).stored(stored).binding(binding).policy(policy);
    }

    /** {@code retrieve}: serve or refresh through the IdP block ({@code idp}, see {@link #idp}). */
    public static CoreRequest retrieve(long now, String stored, Binding binding, Policy policy, Idp idp) {
        CoreRequest r = new CoreRequest("retrieve", now).stored(stored).binding(binding).policy(policy);
        r.root.set("idp", idp.json());
        return r;
    }

    /** {@code app_token}: client_credentials for {@code scope} through the core's per-node cache. */
    public static CoreRequest appToken(long now, String scope, int minValiditySeconds, Idp idp) {
        CoreRequest r = new CoreRequest("app_token", now);
        r.root.put("scope", scope);
        r.root.putObject("policy").put("min_validity_s", minValiditySeconds);
        r.root.set("idp", idp.json());
        return r;
    }

    /** {@code inspect}: the stored token's status for admins (no token values in the answer). */
    public static CoreRequest inspect(long now, String stored, Binding binding) {
        return new CoreRequest("inspect", now).stored(stored).binding(binding);
    }

    /** {@code keyring}: load the storage keys from {@code keyFile}; null switches encryption off. */
    public static CoreRequest keyring(String keyFile, String mode, boolean allowPlaintext) {
        CoreRequest r = new CoreRequest("keyring", 0);
        ObjectNode ring = r.root.putObject("keyring");
        if (keyFile != null) {
            ring.put("key_file", keyFile).put("mode", mode).put("allow_plaintext", allowPlaintext);
        }
        return r;
    }

    /** {@code seal}: the value in its storage form; {@code previous} the row's value (may be null). */
    public static CoreRequest seal(String value, Binding binding, String previous) {
        CoreRequest r = new CoreRequest("seal", 0).stored(value).binding(binding);
        if (previous != null) {
            r.root.put("previous", previous);
        }
        return r;
    }

    /** {@code unseal}: the value plain (rollback of encryption). */
    public static CoreRequest unseal(String value, Binding binding) {
        return new CoreRequest("unseal", 0).stored(value).binding(binding);
    }

    /** {@code trust}: hand Keycloak's truststore (PEM) to the core's HTTP client. */
    public static CoreRequest trust(String caPem) {
        CoreRequest r = new CoreRequest("trust", 0);
        r.root.put("ca_pem", caPem);
        return r;
    }

    /** Adds {@code resource} (a token for another scope of the IdP). */
    public CoreRequest resource(Resource resource) {
        if (resource != null) {
            root.putObject("resource").put("scope", resource.scope()).put("refresh_scope", resource.refreshScope());
        }
        return this;
    }

    /** Adds {@code obo} (on-behalf-of / token exchange). */
    public CoreRequest obo(Obo obo) {
        if (obo != null) {
            root.putObject("obo").put("client_id", obo.clientId()).put("client_secret", obo.clientSecret())
                    .put("client_auth", obo.clientAuth()).put("assertion_scope", obo.assertionScope())
                    .put("scope", obo.scope()).put("mode", obo.mode());
        }
        return this;
    }

    private CoreRequest stored(String stored) {
        root.put("stored", stored);
        return this;
    }

    private CoreRequest binding(Binding binding) {
        root.set("binding", binding.json());
        return this;
    }

    private CoreRequest policy(Policy p) {
        root.putObject("policy").put("min_validity_s", p.minValiditySeconds())
                .put("include_refresh_token", p.includeRefreshToken()).put("include_id_token", p.includeIdToken());
        return this;
    }

    public String op() {
        return op;
    }

    /** The envelope as sent to the core (carries secrets and tokens: never log it). */
    public String json() {
        return root.toString();
    }

    @Override
    public String toString() {
        return "CoreRequest[op=" + op + "]";
    }
}
