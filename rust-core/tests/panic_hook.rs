//! The panic hook prints the panic's location and withholds its payload. Checked in a
//! child process (this test binary run again), since the hook writes to real stderr.

use std::process::Command;

const PAYLOAD: &str = "PAYLOAD-WITH-TOKEN-sample-9876";
const CHILD_ENV: &str = "FRESH_TOKEN_PANIC_HOOK_CHILD";

#[test]
fn child_process_helper_panics_under_the_hook() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // only meaningful as the child of the test below
    }
    fresh_token_core::jni_bridge::install_panic_hook();
    let caught = std::panic::catch_unwind(|| panic!("{}", PAYLOAD));
    assert!(caught.is_err());
}

#[test]
fn panic_hook_logs_location_with_prefix_and_never_the_payload() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "child_process_helper_panics_under_the_hook", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout} {stderr}");
    assert!(stderr.contains("fresh-token-core: panic at ") && stderr.contains("panic_hook.rs:"), "{stderr}");
    assert!(stderr.contains("(payload withheld)"), "{stderr}");
    assert!(!stderr.contains(PAYLOAD) && !stdout.contains(PAYLOAD), "payload leaked: {stderr} {stdout}");
}
