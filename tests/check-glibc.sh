#!/usr/bin/env bash
# Fails if the native core needs a glibc newer than the oldest one we support: the official
# Keycloak container image (UBI 9) has glibc 2.34, so a .so that needs GLIBC_2.35 or later
# does not load there ("version `GLIBC_2.35' not found").
#
#   tests/check-glibc.sh [path/to/libfresh_token_core.so]     # limit: GLIBC_MAX (default 2.34)
#
# Also fails if it needs a shared library beyond glibc, libgcc_s and libstdc++ (what the JVM needs).
# Exit status: 0 within the limit, 1 too new (the symbols are listed), 2 not checkable.
set -euo pipefail
so=${1:-target/release/libfresh_token_core.so}
max=${GLIBC_MAX:-2.34}

if [ ! -f "$so" ]; then echo "check-glibc: $so not found (run 'make package')" >&2; exit 2; fi
if ! command -v objdump >/dev/null 2>&1; then echo "check-glibc: objdump not found (Debian package binutils)" >&2; exit 2; fi
if ! syms=$(objdump -T "$so" 2>/dev/null); then echo "check-glibc: $so is not an ELF file objdump can read" >&2; exit 2; fi

# Symbol version of each dynamic symbol taken from glibc, e.g. "GLIBC_2.34 __libc_start_main".
needed=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\(?GLIBC_[0-9]+(\.[0-9]+)*\)?$/) { v = $i; gsub(/[()]/, "", v); print v, $NF } }' <<<"$syms" | sort -u)
if [ -z "$needed" ]; then echo "check-glibc: $so references no GLIBC_ symbol versions: not a glibc-linked library?" >&2; exit 2; fi

newest=$(cut -d' ' -f1 <<<"$needed" | sed 's/^GLIBC_//' | sort -uV | tail -n1)
too_new=$(while read -r ver sym; do
  v=${ver#GLIBC_}
  if [ "$v" != "$max" ] && [ "$(printf '%s\n%s\n' "$v" "$max" | sort -V | tail -n1)" = "$v" ]; then echo "  $sym@$ver"; fi
done <<<"$needed")

if [ -n "$too_new" ]; then
  {
    echo "check-glibc: FAIL: $so needs glibc $newest, newer than the supported minimum $max"
    echo "(the Keycloak container image, UBI 9, has glibc 2.34; the library would not load there)."
    echo "Symbols that need a newer glibc:"
    echo "$too_new"
    echo "Build on a system whose glibc is at most $max (for 2.34: a UBI 9 or Rocky Linux 9 builder), or avoid these symbols."
  } >&2
  exit 1
fi
# Only libraries the JVM itself needs, so present in every image that runs Keycloak (the
# official one is UBI 9 micro: no OpenSSL, no libz beyond what Java brings).
allowed='^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libstdc\+\+\.so\.6|ld-linux-[a-z0-9_-]+\.so\.[0-9]+)$'
extra=$(objdump -p "$so" | awk '$1 == "NEEDED" { print $2 }' | grep -Ev "$allowed" || true)
if [ -n "$extra" ]; then
  echo "check-glibc: FAIL: $so needs shared libraries the Keycloak image may not have:" >&2
  sed 's/^/  /' <<<"$extra" >&2
  echo "Link them statically (e.g. rustls instead of OpenSSL) so that only glibc and libgcc_s are needed." >&2
  exit 1
fi
echo "check-glibc: OK: $(basename "$so") needs glibc $newest at most (limit $max) and only $(objdump -p "$so" | awk '$1 == "NEEDED" { printf "%s ", $2 }')"
