# The front door. `make help` lists the targets.
SHELL := /bin/bash
KC_VERSION ?= 26.7.3
export KC_VERSION
PY ?= python3
JAR_VERSION := 0.1.0
SO := target/release/libfresh_token_core.so
# The same library with the test-only JNI entry point `panicForTest` (cargo feature test-panic),
# in a target dir of its own so that it never ends up in target/dist.
TEST_PANIC_DIR := target/test-panic
TEST_SO := $(TEST_PANIC_DIR)/release/libfresh_token_core.so

.PHONY: help deps package run run-cluster stop test test-rust test-java test-e2e test-cluster check-glibc test-compat bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install what the tests need (Python packages; Debian packages where missing)
	@bash tests/install-deps.sh

$(SO): Cargo.toml rust-core/Cargo.toml $(shell find rust-core/src -name '*.rs' 2>/dev/null)
	cargo build --release -p fresh-token-core

$(TEST_SO): Cargo.toml rust-core/Cargo.toml $(shell find rust-core/src -name '*.rs' 2>/dev/null)
	cargo build --release -p fresh-token-core --features test-panic --target-dir $(TEST_PANIC_DIR)

java-spi/target/keycloak-fresh-token-$(JAR_VERSION).jar: java-spi/pom.xml $(shell find java-spi/src/main -type f 2>/dev/null)
	cd java-spi && mvn -q -B package -DskipTests

package: $(SO) java-spi/target/keycloak-fresh-token-$(JAR_VERSION).jar ## build; leaves exactly the provider JAR and the .so in target/dist/
	@rm -rf target/dist && mkdir -p target/dist
	cp java-spi/target/keycloak-fresh-token-$(JAR_VERSION).jar $(SO) target/dist/
	@if nm -D target/dist/libfresh_token_core.so | grep -q panicForTest; then \
	  echo "package: target/dist/libfresh_token_core.so exports the test-only panicForTest" >&2; exit 1; fi
	@ls -l target/dist

run: deps package ## Keycloak + extension + demo realm + mock Entra ID on localhost (Ctrl-C stops all)
	@bash tests/run-demo.sh

run-cluster: deps package ## two Keycloak nodes (PostgreSQL, jdbc-ping on loopback) + extension + demo realm + mock Entra ID
	@bash tests/run-cluster-demo.sh

test: deps package check-glibc test-rust test-java test-e2e test-compat test-cluster ## every test: cargo, Maven (JNI boundary), end to end through a real Keycloak, compatibility, two-node cluster
	@echo "make test: all stages passed"

test-rust: ## cargo tests of the core, and clippy over the whole crate (warnings are errors)
	cargo test -p fresh-token-core
	cargo clippy -p fresh-token-core --all-targets -- -D warnings

test-java: $(TEST_SO) ## Maven tests (the JNI boundary under -Xcheck:jni, on the test build of the .so)
	cd java-spi && mvn -q -B test -Dnative.dir=$(CURDIR)/$(TEST_PANIC_DIR)/release

test-e2e: package ## end-to-end suite: real Keycloak, mock Entra ID
	cd tests && $(PY) -m pytest -v mock_entra mock_graph e2e

test-cluster: package ## two-node cluster: cross-node single-flight and node/database faults (about 10 min)
	cd tests && $(PY) -m pytest -v -s cluster

check-glibc: package ## the .so needs glibc <= 2.34 and no shared library beyond glibc/libgcc_s (UBI 9 Keycloak image)
	bash tests/check-glibc.sh target/dist/libfresh_token_core.so

test-compat: package $(TEST_SO) ## same JAR + .so on Keycloak 26.4.7 and 26.5.6 (Java 17) and 26.7.3 on Java 25
	bash tests/compat/run.sh

bench: deps package ## benchmarks side by side with stock Keycloak (about 20 min); writes docs/bench/
	@bash tests/bench/run.sh

clean: ## remove build output and the unpacked Keycloak
	cargo clean
	cd java-spi && mvn -q -B clean
	-keycloak-dist/cluster.sh stop
	rm -rf target/dist keycloak-dist/keycloak-* keycloak-dist/run
