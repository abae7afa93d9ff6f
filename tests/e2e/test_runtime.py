"""Which Keycloak and which JDK this run really used: the compatibility stage (make test-compat)
runs the suite on several Keycloak versions and on Java 25, and must not pass by quietly
running the default ones."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import KC_JAVA_HOME, KC_VERSION, kc_log_path


def expected_java_major() -> int:
    """E2E_EXPECT_JAVA_MAJOR, else the major version of the JDK keycloak.sh hands to kc.sh."""
    if os.environ.get("E2E_EXPECT_JAVA_MAJOR"):
        return int(os.environ["E2E_EXPECT_JAVA_MAJOR"])
    home = KC_JAVA_HOME or os.environ.get("JAVA_HOME", "")
    java = str(Path(home) / "bin" / "java") if home else "java"
    out = subprocess.run([java, "-XshowSettings:properties", "-version"], capture_output=True, text=True).stderr
    m = re.search(r"java\.specification\.version = (\d+)", out)
    assert m, out
    return int(m.group(1))


def running_java_major(admin) -> int:
    return int(admin.server_info()["systemInfo"]["javaVersion"].split(".")[0])


def test_keycloak_runs_the_requested_version_on_the_requested_java(admin):
    info = admin.server_info()["systemInfo"]
    assert info["version"] == KC_VERSION, info
    assert int(info["javaVersion"].split(".")[0]) == expected_java_major(), info


def test_native_core_loads_without_a_restricted_method_warning_on_java_24_and_later(admin):
    """From Java 24 (JEP 472) loading a JNI library from code without native access prints a
    warning, and a later JDK will refuse it; Keycloak's kc.sh grants --enable-native-access."""
    if running_java_major(admin) < 24:
        pytest.skip("restricted-method warnings for JNI exist only from Java 24")
    op = admin.server_info()["providers"]["identity_provider"]["providers"]["entra-oidc"]["operationalInfo"]
    assert op["nativeLibraryState"] == "LOADED", op
    log = kc_log_path().read_text(errors="replace")
    assert "restricted method" not in log.lower(), "JNI restricted-method warning in the Keycloak log"
