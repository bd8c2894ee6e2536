#!/bin/sh
# The suite on every supported PostgreSQL major, one after another (`npm run test:all-majors`):
# `npm test` (typecheck, then every test on 17, the default), then vitest on each other major.
# TANDEM_TEST_MAJORS overrides the list of other majors. Every major runs even when one fails;
# the exit status is 1 if any did.
set -u
npm test || { echo "all-majors: npm test (PostgreSQL 17) failed"; exit 1; }
failed=""
for major in ${TANDEM_TEST_MAJORS:-14 15 16 18}; do
  echo "all-majors: PostgreSQL $major"
  TANDEM_TEST_PG=$major npx vitest run || failed="$failed $major"
done
if [ -n "$failed" ]; then
  echo "all-majors: failed on PostgreSQL$failed"
  exit 1
fi
echo "all-majors: passed on PostgreSQL 17 and ${TANDEM_TEST_MAJORS:-14 15 16 18}"
