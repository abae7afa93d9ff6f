//! Layer 5 (top): the JNI edge, the only FFI module: the native methods of
//! `dev.freshtoken.keycloak.nativecore.NativeCore`.
//!
//! May use: `dispatch` (and nothing below it directly). Nothing uses it but the JVM.
//!
//! Each `Java_…` function is one line around an ordinary Rust function returning
//! `Result`. `EnvUnowned::with_env` catches panics; [`ThrowWithoutPayload`] turns errors
//! and panics into a `java.lang.RuntimeException` whose message carries no payload data.
//! A panic hook (installed once) logs only the panic's location to stderr. Rust never
//! calls back into Java and never uses JNI from threads it spawned.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use jni::errors::ErrorPolicy;
use jni::objects::{JByteArray, JClass, JString};
use jni::refs::Reference as _;
use jni::{Env, EnvUnowned};

/// Prefix of every line this library writes to stderr.
pub const LOG_PREFIX: &str = "fresh-token-core";

static PANIC_HOOK: OnceLock<()> = OnceLock::new();

/// Installs (once per process) a panic hook that prints only `file:line` of a panic,
/// never its payload (which could quote data).
pub fn install_panic_hook() {
    PANIC_HOOK.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| match info.location() {
            Some(loc) => eprintln!("{LOG_PREFIX}: panic at {}:{} (payload withheld)", loc.file(), loc.line()),
            None => eprintln!("{LOG_PREFIX}: panic at unknown location (payload withheld)"),
        }));
    });
}

/// The error policy of every entry point: a `RuntimeException` with a fixed message.
/// A Java exception already pending wins; the panic payload is dropped unread.
pub struct ThrowWithoutPayload;

impl<T: Default, E: std::fmt::Display> ErrorPolicy<T, E> for ThrowWithoutPayload {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        err: E,
    ) -> jni::errors::Result<T> {
        if !env.exception_check() {
            // jni's own errors name JNI calls and types, never our data.
            let _ = env.throw(format!("{LOG_PREFIX}: JNI error: {err}"));
        }
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        payload: Box<dyn Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        drop_payload(payload);
        if !env.exception_check() {
            let _ = env.throw(format!("{LOG_PREFIX}: Rust panic (payload withheld; location in the server log)"));
        }
        Ok(T::default())
    }
}

/// Dropping a payload can itself panic; then leak it instead.
fn drop_payload(payload: Box<dyn Any + Send + 'static>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// `static native String version()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_freshtoken_keycloak_nativecore_NativeCore_version<'l>(
    mut unowned: EnvUnowned<'l>,
    _class: JClass<'l>,
) -> JString<'l> {
    unowned.with_env(version).resolve::<ThrowWithoutPayload>()
}

/// `static native String call(String requestJson)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_freshtoken_keycloak_nativecore_NativeCore_call<'l>(
    mut unowned: EnvUnowned<'l>,
    _class: JClass<'l>,
    request: JString<'l>,
) -> JString<'l> {
    unowned.with_env(|env| call(env, &request)).resolve::<ThrowWithoutPayload>()
}

/// `static native byte[] serveFresh(byte[] stored, long now, int minValidity, int flags,
/// String realm, String user, String alias, String subject)`: the fresh-path op of
/// docs/CONTRACT.md. `flags`: bit 0 include the refresh token, bit 1 include the id token.
/// `alias` null: no binding. Returns the app's token response (UTF-8), or null: ask `check`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_freshtoken_keycloak_nativecore_NativeCore_serveFresh<'l>(
    mut unowned: EnvUnowned<'l>,
    _class: JClass<'l>,
    stored: JByteArray<'l>,
    now: jni::sys::jlong,
    min_validity: jni::sys::jint,
    flags: jni::sys::jint,
    realm: JString<'l>,
    user: JString<'l>,
    alias: JString<'l>,
    subject: JString<'l>,
) -> JByteArray<'l> {
    unowned
        .with_env(|env| serve_fresh(env, &stored, now, min_validity, flags, [&realm, &user, &alias, &subject]))
        .resolve::<ThrowWithoutPayload>()
}

/// `static native String panicForTest()`: test builds only (cargo feature `test-panic`).
#[cfg(feature = "test-panic")]
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_freshtoken_keycloak_nativecore_NativeCore_panicForTest<'l>(
    mut unowned: EnvUnowned<'l>,
    _class: JClass<'l>,
) -> JString<'l> {
    unowned.with_env(panic_for_test).resolve::<ThrowWithoutPayload>()
}

fn version<'l>(env: &mut Env<'l>) -> jni::errors::Result<JString<'l>> {
    install_panic_hook();
    JString::from_str(env, crate::dispatch::version())
}

fn call<'l>(env: &mut Env<'l>, request: &JString<'_>) -> jni::errors::Result<JString<'l>> {
    install_panic_hook();
    let answer = if request.is_null() {
        crate::dispatch::null_request_answer()
    } else {
        crate::dispatch::call(&request.try_to_string(env)?)
    };
    JString::from_str(env, answer)
}

/// A Java string, `""` for null.
fn text(env: &mut Env<'_>, s: &JString<'_>) -> jni::errors::Result<String> {
    if s.is_null() { Ok(String::new()) } else { s.try_to_string(env) }
}

fn serve_fresh<'l>(
    env: &mut Env<'l>,
    stored: &JByteArray<'_>,
    now: i64,
    min_validity: i32,
    flags: i32,
    [realm, user, alias, subject]: [&JString<'_>; 4],
) -> jni::errors::Result<JByteArray<'l>> {
    install_panic_hook();
    if stored.is_null() {
        return Ok(JByteArray::default());
    }
    let bytes = env.convert_byte_array(stored)?;
    let row = if alias.is_null() {
        None
    } else {
        Some([text(env, realm)?, text(env, user)?, text(env, alias)?, text(env, subject)?])
    };
    match crate::dispatch::serve_fresh_bytes(&bytes, row, now, i64::from(min_validity), flags) {
        Some(body) => env.byte_array_from_slice(body.as_bytes()),
        None => Ok(JByteArray::default()),
    }
}

#[cfg(feature = "test-panic")]
#[allow(clippy::panic)]
fn panic_for_test<'l>(_env: &mut Env<'l>) -> jni::errors::Result<JString<'l>> {
    install_panic_hook();
    panic!("panicForTest: deliberate panic with a payload that must not reach Java or the log");
}
