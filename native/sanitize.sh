#!/usr/bin/env bash
# Runs the proxy and end-to-end tests with the native forwarder built under AddressSanitizer and
# UndefinedBehaviorSanitizer, then rebuilds the normal addon. Any report fails the run.
#   bash native/sanitize.sh [test files…]   (needs gcc with libasan/libubsan, as on Debian; default: the files below)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"; node native/build.mjs' EXIT
mkdir -p native/build/Release
gcc -shared -fPIC -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
  -std=gnu11 -I"$(dirname "$(command -v node)")/../include/node" native/forwarder.c \
  -o native/build/Release/tandem_forwarder.node -lpthread
# The sanitizer runtimes must be loaded first, so they are preloaded into every process; the other
# programs the tests start get a clean environment (Debian's psql is a Perl wrapper, and Chromium's
# sandboxed children, which both hang under ASan; the drivers' interpreters are not ours to check).
mkdir -p "$work/bin"
for tool in psql pgbench pgbouncer chromium python3 java javac promtool; do
  command -v "$tool" > /dev/null || continue
  printf '#!/bin/sh\nunset LD_PRELOAD\nexec %s "$@"\n' "$(command -v "$tool")" > "$work/bin/$tool"
  chmod +x "$work/bin/$tool"
done
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(test/proxy test/e2e test/unit/native-scanner.test.ts test/unit/native-handle.test.ts)
failed=0
PATH="$work/bin:$PATH" \
  LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
  ASAN_OPTIONS="detect_leaks=0:log_path=$work/asan" UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/ubsan" \
  npx vitest run "${tests[@]}" || failed=$?
# The reports are looked at even when a test failed: a failure may be what a report explains.
if compgen -G "$work/asan*" > /dev/null || compgen -G "$work/ubsan*" > /dev/null; then
  cat "$work"/asan* "$work"/ubsan* 2>/dev/null
  echo "sanitizer reports above" >&2
  exit 1
fi
echo "no sanitizer reports"
exit "$failed"
