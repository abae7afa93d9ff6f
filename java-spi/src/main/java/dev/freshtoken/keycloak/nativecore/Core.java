package dev.freshtoken.keycloak.nativecore;

import java.nio.charset.StandardCharsets;

import org.jboss.logging.Logger;

/**
 * The one way to send a {@link CoreRequest}: an unavailable library or a caught panic becomes
 * an err answer like any other ({@code native_unavailable}, {@code internal_error}), so no
 * caller parses or fabricates envelopes itself.
 */
public final class Core {

    private static final Logger LOG = Logger.getLogger("dev.freshtoken.keycloak");

    private Core() {
    }

    /**
     * The fresh path ({@code serveFresh}): the app's token response when the stored token is served
     * as it is, else null, and then the caller asks {@code check}, which also answers an
     * unavailable library. A failure inside the core (a caught panic) is logged and is null, too.
     */
    public static byte[] serveFresh(String stored, long now, int minValidity, boolean includeRefreshToken,
                                    boolean includeIdToken, CoreRequest.Binding binding) {
        int flags = (includeRefreshToken ? 1 : 0) | (includeIdToken ? 2 : 0);
        try {
            return binding == null
                    ? NativeLibrary.serveFresh(stored.getBytes(StandardCharsets.UTF_8), now, minValidity, flags, null, null, null, null)
                    : NativeLibrary.serveFresh(stored.getBytes(StandardCharsets.UTF_8), now, minValidity, flags, binding.realm(),
                            binding.user(), binding.alias(), binding.subject());
        } catch (NativeUnavailableException | UnsatisfiedLinkError e) {
            return null; // check answers native_unavailable (or, for an older library, serves the long way)
        } catch (RuntimeException e) {
            LOG.errorf("fresh-token: native core failed (op serveFresh): %s", e.getMessage());
            return null;
        }
    }

    public static CoreAnswer call(CoreRequest request) {
        String raw;
        try {
            raw = NativeLibrary.call(request.json());
        } catch (NativeUnavailableException e) {
            return CoreAnswer.error(ErrorCode.NATIVE_UNAVAILABLE, "The fresh-token native core is not available on this "
                    + "Keycloak node; see the provider's operational info and the server log.");
        } catch (RuntimeException e) {
            // A panic inside the core arrives here; its message carries no payload data.
            LOG.errorf("fresh-token: native core failed (op %s): %s", request.op(), e.getMessage());
            return CoreAnswer.error(ErrorCode.INTERNAL_ERROR, "The fresh-token core failed unexpectedly; see the server log.");
        }
        return CoreAnswer.parse(raw);
    }
}
