#!/bin/sh
# The suite on every supported PostgreSQL major, one after another (`npm run test:all-majors`):
# `npm test` (typecheck, then every test on 17, the default), then vitest on each other major.
# TANDEM_TEST_MAJORS overrides the list of other majors. Every major runs even when one fails;
# the exit status is 1 if any did. CI keeps only the end of the output, so what failed on each
# major is printed again at the very end, where it survives the cut.
set -u
logs=$(mktemp -d)

# Runs a command, showing its output as it comes and keeping it in $logs/$1; the exit status is
# the command's.
run_logged() {
  name=$1
  shift
  { "$@"; echo $? > "$logs/$name.status"; } 2>&1 | tee "$logs/$name"
  return "$(cat "$logs/$name.status")"
}

# vitest lists each failing test with its error under "Failed Tests"; a typecheck prints "error TS".
what_failed() {
  echo "all-majors: what failed on PostgreSQL $1"
  grep "error TS" "$logs/$1" | head -n 40
  sed -n '/Failed Tests/,/Test Files/p' "$logs/$1" | head -n 300
}

if ! run_logged 17 npm test; then
  what_failed 17
  echo "all-majors: npm test (PostgreSQL 17) failed"
  exit 1
fi
failed=""
for major in ${TANDEM_TEST_MAJORS:-14 15 16 18}; do
  echo "all-majors: PostgreSQL $major"
  run_logged "$major" env TANDEM_TEST_PG="$major" npx vitest run || failed="$failed $major"
done
if [ -n "$failed" ]; then
  for major in $failed; do what_failed "$major"; done
  echo "all-majors: failed on PostgreSQL$failed"
  exit 1
fi
echo "all-majors: passed on PostgreSQL 17 and ${TANDEM_TEST_MAJORS:-14 15 16 18}"
