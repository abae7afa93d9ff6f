package dev.freshtoken.keycloak.nativecore;

/** The native core is missing, unloadable or of another version; the message says which. */
public class NativeUnavailableException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public NativeUnavailableException(String problem) {
        super(problem);
    }
}
