package dev.freshtoken.keycloak.nativecore;

/**
 * The native methods of the Rust core. The contract is documented in docs/CONTRACT.md;
 * nothing else in the provider talks to native code. Use {@link NativeLibrary} to make
 * sure the library is loaded before calling these.
 */
public final class NativeCore {

    /** Must equal the Rust side's {@code contract::CONTRACT_VERSION}. */
    public static final int CONTRACT_VERSION = 1;

    private NativeCore() {
    }

    /** {@code {"version":"x.y.z","contract":N}} */
    static native String version();

    /** One request envelope in, one answer envelope out (docs/CONTRACT.md). */
    static native String call(String requestJson);

    /** Panics inside the core on purpose: proves that a panic arrives as a RuntimeException. */
    static native String panicForTest();
}
