#!/usr/bin/env bash
# Fetches the Delta Lake connector jars, and the Derby network server's for the catalogue server,
# from Maven Central into a cache folder, so that Spark gets them through spark.jars and never
# resolves anything through Ivy at run time.
# Usage: infra/fetch_delta_jars.sh CACHE_DIR     (jars land in CACHE_DIR/jars)
set -euo pipefail
cache=${1:?usage: fetch_delta_jars.sh CACHE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/delta_jars.env"
mkdir -p "$cache/jars" "$cache/m2"
for coord in $DELTA_JARS $CATALOG_JARS; do
  IFS=: read -r group artifact version <<<"$coord"
  jar="$cache/jars/$artifact-$version.jar"
  [ -s "$jar" ] && continue
  echo "fetching $coord from Maven Central"
  mvn -B -q -Dmaven.repo.local="$cache/m2" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="$coord" -DoutputDirectory="$cache/jars"
  [ -s "$jar" ] || { echo "error: $jar missing after mvn copy" >&2; exit 1; }
done
