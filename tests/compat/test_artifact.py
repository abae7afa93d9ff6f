"""One artifact, many Keycloaks, without starting a server:
- LinkCheck: the provider JAR links against every supported Keycloak distribution (every method
  and field it uses exists with the exact descriptor; overrides still override);
- check-glibc.sh: the .so needs no glibc newer than 2.34 (UBI 9, the official container image).
Each check is also shown to fail on a known-bad input, so a green run means something."""
from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "target" / "dist"
LINKCHECK = ROOT / "tests" / "compat" / "LinkCheck.java"
CHECK_GLIBC = ROOT / "tests" / "check-glibc.sh"
VERSIONS = os.environ.get("COMPAT_KC_VERSIONS", "26.4.7 26.5.6 26.7.3").split()


def provider_jar() -> Path:
    jars = sorted(DIST.glob("keycloak-fresh-token-*.jar"))
    assert jars, "no provider JAR in target/dist: run 'make package'"
    return jars[0]


def native_so() -> Path:
    so = DIST / "libfresh_token_core.so"
    assert so.is_file(), "no libfresh_token_core.so in target/dist: run 'make package'"
    return so


def kc_dist(version: str) -> Path:
    out = subprocess.run([str(ROOT / "keycloak-dist" / "fetch.sh")], env={**os.environ, "KC_VERSION": version},
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


COMPILE_VERSION = "26.7.3"  # java-spi/pom.xml keycloak.version


def linkcheck(jar: Path, dist: Path, baseline: Path | None = None) -> subprocess.CompletedProcess:
    args = ["java", str(LINKCHECK), str(jar), str(dist)] + ([str(baseline)] if baseline else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("version", VERSIONS)
def test_provider_jar_links_against_keycloak(version):
    r = linkcheck(provider_jar(), kc_dist(version), baseline=kc_dist(COMPILE_VERSION))
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"against keycloak-{version}" in r.stdout and " 0 error(s)" in r.stdout
    if version < "26.6":
        # The V2 override is expected to be inert before 26.6, and the check must say so.
        assert "retrieveToken" in r.stdout and "method absent in this version" in r.stdout


def test_linkcheck_catches_the_isStoreToken_return_type_change(tmp_path):
    """A class compiled against 26.7 that calls IdentityProviderModel.isStoreToken() directly
    (returns Boolean there, boolean in 26.4) must be reported for 26.4.7 and pass on 26.7.3."""
    src = tmp_path / "src" / "probe" / "Probe.java"
    src.parent.mkdir(parents=True)
    src.write_text("package probe;\n"
                   "public class Probe {\n"
                   "  public static boolean store(org.keycloak.models.IdentityProviderModel m) { return m.isStoreToken(); }\n"
                   "}\n")
    new = kc_dist("26.7.3")
    cp = next((new / "lib" / "lib" / "main").glob("org.keycloak.keycloak-server-spi-26.7.3.jar"))
    classes = tmp_path / "classes"
    subprocess.run(["javac", "--release", "17", "-cp", str(cp), "-d", str(classes), str(src)], check=True)
    jar = tmp_path / "probe.jar"
    with zipfile.ZipFile(jar, "w") as z:
        z.write(classes / "probe" / "Probe.class", "probe/Probe.class")
    if "26.4.7" in VERSIONS:
        bad = linkcheck(jar, kc_dist("26.4.7"))
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "IdentityProviderModel.isStoreToken()Ljava/lang/Boolean;" in bad.stdout
        assert "NoSuchMethodError" in bad.stdout
    good = linkcheck(jar, new)
    assert good.returncode == 0, good.stdout + good.stderr


def test_native_core_needs_no_glibc_newer_than_ubi9():
    r = subprocess.run([str(CHECK_GLIBC), str(native_so())], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "limit 2.34" in r.stdout
    assert "libc.so.6" in r.stdout


def test_glibc_check_fails_for_a_lower_limit_and_names_the_symbols():
    r = subprocess.run([str(CHECK_GLIBC), str(native_so())], capture_output=True, text=True,
                       env={**os.environ, "GLIBC_MAX": "2.17"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "newer than the supported minimum 2.17" in r.stderr
    assert "@GLIBC_2." in r.stderr


def test_glibc_check_refuses_a_file_that_is_not_an_elf_library(tmp_path):
    fake = tmp_path / "libfresh_token_core.so"
    fake.write_bytes(b"not an ELF file\n")
    r = subprocess.run([str(CHECK_GLIBC), str(fake)], capture_output=True, text=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "not an ELF file" in r.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build a tiny ELF library")
def test_glibc_check_passes_a_library_without_new_symbols_and_flags_one_with(tmp_path):
    """A tiny library that calls only old symbols passes a 2.17 limit; one that calls
    pthread_create (GLIBC_2.34 on this build host's glibc >= 2.34) fails it."""
    old = tmp_path / "old.c"
    old.write_text("#include <string.h>\nsize_t f(const char *s) { return strlen(s); }\n")
    new = tmp_path / "new.c"
    new.write_text("#include <pthread.h>\nstatic void *run(void *a) { return a; }\n"
                   "int g(void) { pthread_t t; return pthread_create(&t, 0, run, 0); }\n")
    for name in ("old", "new"):
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / f"lib{name}.so"), str(tmp_path / f"{name}.c"), "-lpthread"],
                       check=True)
    ok = subprocess.run([str(CHECK_GLIBC), str(tmp_path / "libold.so")], capture_output=True, text=True,
                        env={**os.environ, "GLIBC_MAX": "2.17"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([str(CHECK_GLIBC), str(tmp_path / "libnew.so")], capture_output=True, text=True,
                         env={**os.environ, "GLIBC_MAX": "2.17"})
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "pthread_create@GLIBC_2.34" in bad.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build a tiny ELF library")
def test_glibc_check_fails_a_library_that_needs_a_shared_library_beyond_glibc(tmp_path):
    """The official image (UBI 9 micro) has glibc, libgcc_s and libstdc++ (the JVM needs them),
    not e.g. libz or OpenSSL: a .so that needs one of those must fail the check."""
    libz = next((p for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                              "/lib/aarch64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1") if Path(p).exists()), None)
    if libz is None:
        pytest.skip("no libz.so.1 on this machine to link against")
    src = tmp_path / "u.c"
    src.write_text("int f(void) { return 0; }\n")
    so = tmp_path / "libu.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src), "-Wl,--no-as-needed", libz], check=True)
    r = subprocess.run([str(CHECK_GLIBC), str(so)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "libz.so.1" in r.stderr
    assert "may not have" in r.stderr
