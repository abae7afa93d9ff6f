package dev.freshtoken.keycloak.nativecore;

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
