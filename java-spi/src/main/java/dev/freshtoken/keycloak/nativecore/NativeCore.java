package dev.freshtoken.keycloak.nativecore;

/**
 * The native methods of the Rust core. The contract is documented in docs/CONTRACT.md;
 * nothing else in the provider talks to native code. Use {@link NativeLibrary} to make
 * sure the library is loaded before calling these.
 */
public final class NativeCore {

    /** Must equal the Rust side's {@code contract::CONTRACT_VERSION}. */
    public static final int CONTRACT_VERSION = 2;

    private NativeCore() {
    }

    /** {@code {"version":"x.y.z","contract":N}} */
    static native String version();

    /** One request envelope in, one answer envelope out (docs/CONTRACT.md). */
    static native String call(String requestJson);

    /**
     * The fresh path in one call (docs/CONTRACT.md, "The fresh path: serveFresh"): the app's token
     * response as UTF-8 bytes when the stored token is served as it is, else null (ask {@code check}).
     * {@code flags}: bit 0 include the refresh token, bit 1 the id token; {@code alias} null: no binding.
     */
    static native byte[] serveFresh(byte[] stored, long now, int minValidity, int flags, String realm, String user,
                                    String alias, String subject);

    /** Panics inside the core on purpose: proves that a panic arrives as a RuntimeException. */
    static native String panicForTest();
}
