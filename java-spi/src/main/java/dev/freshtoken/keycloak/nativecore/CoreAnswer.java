package dev.freshtoken.keycloak.nativecore;

import java.util.Iterator;
import java.util.List;
import java.util.ArrayList;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The core's answer envelope ({@code {"ok": {...}}} or {@code {"err": {...}}}, docs/CONTRACT.md),
 * parsed once. Our own failures before or around a native call are err answers of the same
 * shape ({@link #error}), so callers handle one type. {@code raw} holds tokens: never log it;
 * {@link #toString()} names the outcome only.
 */
public record CoreAnswer(JsonNode ok, JsonNode err, String raw) {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    public static CoreAnswer parse(String raw) {
        try {
            JsonNode root = MAPPER.readTree(raw);
            JsonNode ok = root.get("ok");
            JsonNode err = root.get("err");
            if (ok == null && err == null) {
                return error(ErrorCode.INTERNAL_ERROR, "The fresh-token core gave an answer without ok or err.");
            }
            return new CoreAnswer(ok, err, raw);
        } catch (Exception e) {
            return error(ErrorCode.INTERNAL_ERROR, "The fresh-token core gave an unreadable answer.");
        }
    }

    /** An err answer of ours, in the core's shape, with the code's status. */
    public static CoreAnswer error(ErrorCode code, String description) {
        return error(code, description, null);
    }

    /** As {@link #error(ErrorCode, String)} with {@code retry_after_s} (null: none). */
    public static CoreAnswer error(ErrorCode code, String description, Long retryAfter) {
        ObjectNode err = MAPPER.createObjectNode();
        err.put("code", code.code()).put("status", code.status());
        if (retryAfter != null) {
            err.put("retry_after_s", retryAfter);
        }
        err.put("error_description", description);
        ObjectNode root = MAPPER.createObjectNode();
        root.set("err", err);
        return new CoreAnswer(null, err, root.toString());
    }

    public boolean isError() {
        return ok == null;
    }

    /** {@code ok.action}: serve, refresh, refreshed, ...; null for an err. */
    public String action() {
        return ok == null ? null : ok.path("action").asText(null);
    }

    /** What to persist; on an err only when the core refreshed something on the way (CONTRACT.md). */
    public String store() {
        JsonNode s = body() == null ? null : body().get("store");
        return s != null && s.isTextual() ? s.asText() : null;
    }

    public JsonNode body() {
        return ok != null ? ok : err;
    }

    /** The err's code ({@code internal_error} when absent); null for an ok answer. */
    public String code() {
        return err == null ? null : err.path("code").asText(ErrorCode.INTERNAL_ERROR.code());
    }

    /** The err's HTTP status as the core set it (500 when absent). */
    public int status() {
        return err == null ? 200 : err.path("status").asInt(ErrorCode.INTERNAL_ERROR.status());
    }

    public String description() {
        return err == null ? "" : err.path("error_description").asText("");
    }

    /** The err's {@code upstream} block (what the IdP said), or null. */
    public JsonNode upstream() {
        JsonNode u = err == null ? null : err.get("upstream");
        return u == null || u.isNull() ? null : u;
    }

    /** The err's {@code retry_after_s}, or null. */
    public Long retryAfter() {
        JsonNode r = err == null ? null : err.get("retry_after_s");
        return r != null && r.canConvertToLong() ? r.asLong() : null;
    }

    /** {@code upstream_ms}: the time this answer spent asking the IdP, or null. */
    public Long upstreamMs() {
        JsonNode ms = body() == null ? null : body().get("upstream_ms");
        return ms != null && ms.canConvertToLong() ? ms.asLong() : null;
    }

    /** A refresh that failed while the stored token was still served ({@code refresh_failure}). */
    public record Failure(String code, JsonNode upstream) {
    }

    /** The ok answer's {@code refresh_failure} (stale served), or null. */
    public Failure refreshFailure() {
        JsonNode f = body() == null ? null : body().get("refresh_failure");
        return f != null && f.isObject() ? new Failure(f.path("code").asText(ErrorCode.UPSTREAM_ERROR.code()), f.get("upstream")) : null;
    }

    /** The core's {@code diag} lines (decisions, never token values). */
    public List<String> diag() {
        List<String> out = new ArrayList<>();
        JsonNode b = body();
        if (b != null) {
            for (Iterator<JsonNode> it = b.path("diag").elements(); it.hasNext();) {
                out.add(it.next().asText());
            }
        }
        return out;
    }

    /** The same answer with {@code "warning": code} in the app's token response (ok answers only). */
    public CoreAnswer withWarning(String code) {
        if (ok instanceof ObjectNode o && o.get("response") instanceof ObjectNode response) {
            response.put("warning", code);
            ObjectNode root = MAPPER.createObjectNode();
            root.set("ok", o);
            return new CoreAnswer(o, null, root.toString());
        }
        return this;
    }

    @Override
    public String toString() {
        return isError() ? "CoreAnswer[err=" + code() + "]" : "CoreAnswer[ok=" + action() + "]";
    }
}
