#!/usr/bin/env bash
# Fetch org.keycloak:keycloak-quarkus-dist:<version>:zip from Maven Central (via Maven's own
# resolver, so proxies/mirrors in ~/.m2/settings.xml apply) and unpack it into
# keycloak-dist/keycloak-<version>/ (KC_VERSION, default 26.7.3; several versions live side by
# side). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${KC_VERSION:-26.7.3}
dest="$here/keycloak-$version"
if [ -x "$dest/bin/kc.sh" ]; then echo "$dest"; exit 0; fi
# Maven's local repository (MAVEN_REPO overrides); a zip already there is unpacked in place.
zip="${MAVEN_REPO:-$HOME/.m2/repository}/org/keycloak/keycloak-quarkus-dist/$version/keycloak-quarkus-dist-$version.zip"
if [ ! -s "$zip" ]; then
  mkdir -p "$here/downloads"
  zip="$here/downloads/keycloak-quarkus-dist-$version.zip"
  if [ ! -s "$zip" ]; then
    mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      -Dartifact="org.keycloak:keycloak-quarkus-dist:$version:zip" \
      -DoutputDirectory="$here/downloads" -Dmdep.overWriteReleases=true >&2
  fi
fi
tmp=$(mktemp -d "$here/unpack.XXXXXX")
(cd "$tmp" && unzip -q "$zip")
mv "$tmp/keycloak-$version" "$dest"
rmdir "$tmp"
echo "$dest"
