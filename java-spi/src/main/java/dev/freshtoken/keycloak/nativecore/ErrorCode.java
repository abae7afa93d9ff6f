package dev.freshtoken.keycloak.nativecore;

import java.util.Arrays;
import java.util.Optional;

/**
 * Every error code the provider answers with, and its HTTP status. The codes marked
 * {@code contract} are the core's closed set (docs/CONTRACT.md, "Error codes"; the core sends
 * its status along and that status is what we answer); the others are the provider's own
 * refusals (our endpoints, admin resources, the migration). {@link ErrorReply} is the one place
 * that turns a code into an HTTP answer.
 */
public enum ErrorCode {
    // The contract's closed set (docs/CONTRACT.md).
    REAUTH_REQUIRED("reauth_required", 400, true),
    CONSENT_REQUIRED("consent_required", 400, true),
    ADMIN_ACTION_REQUIRED("admin_action_required", 403, true),
    RETRY_LATER("retry_later", 503, true),
    IDP_MISCONFIGURED("idp_misconfigured", 502, true),
    UPSTREAM_ERROR("upstream_error", 502, true),
    FORBIDDEN("forbidden", 403, true),
    NATIVE_UNAVAILABLE("native_unavailable", 503, true),
    INTERNAL_ERROR("internal_error", 500, true),
    STORAGE_KEY_ERROR("storage_key_error", 500, true),
    STORAGE_BINDING_MISMATCH("storage_binding_mismatch", 500, true),
    STORAGE_PLAINTEXT_ROW("storage_plaintext_row", 500, true),

    // The provider's own endpoints (README, error table).
    INVALID_REQUEST("invalid_request", 400, false),
    INVALID_TOKEN("invalid_token", 401, false),
    INVALID_CLIENT("invalid_client", 401, false),
    NOT_FOUND("not_found", 404, false),
    UNSUPPORTED_TOKEN_TYPE("unsupported_token_type", 400, false),
    CONFLICT("conflict", 409, false),
    STORAGE_MODE_CONFLICT("storage_mode_conflict", 409, false),

    // The migration admin resource (README, "Migrating an existing IdP").
    UNSUPPORTED_SOURCE("unsupported_source", 400, false),
    UNSUPPORTED_TARGET("unsupported_target", 400, false),
    TARGET_REQUIRED("target_required", 400, false),
    ALREADY_OF_TYPE("already_of_type", 409, false),
    NOT_ENTRA("not_entra", 400, false),
    INVALID_CONFIG("invalid_config", 400, false),
    BLOCKED("blocked", 409, false);

    private final String code;
    private final int status;
    private final boolean contract;

    ErrorCode(String code, int status, boolean contract) {
        this.code = code;
        this.status = status;
        this.contract = contract;
    }

    /** The wire name ({@code "error"} of our answers, {@code err.code} of the core's). */
    public String code() {
        return code;
    }

    /** The HTTP status an answer with this code gets. */
    public int status() {
        return status;
    }

    /** True for the core's closed set of docs/CONTRACT.md. */
    public boolean inContract() {
        return contract;
    }

    public static Optional<ErrorCode> of(String code) {
        return Arrays.stream(values()).filter(c -> c.code.equals(code)).findFirst();
    }

    @Override
    public String toString() {
        return code;
    }
}
