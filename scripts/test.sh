#!/usr/bin/env bash
# Run every test (unit, protocol, real-Asterisk integration) and the linters.
# Installs what is missing first (scripts/setup.sh). Extra arguments go to pytest (then
# only what they select runs, in one pytest; tests/package is a directory like the others).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check src tests testpbx bench
.venv/bin/mypy
if [ $# -gt 0 ]; then
  exec .venv/bin/pytest "$@"
fi
# Without arguments: the Debian package's test (a chroot, apt; minutes spent
# mostly waiting on the mirror and dpkg) runs beside the other suites. The
# suites that use the test PBX (tests/integration and tests/browser, the web
# console in headless Chromium) run one after the other in the one pytest below.
mkdir -p build
package_log=build/package-test.log
.venv/bin/pytest -p no:cacheprovider tests/package >"$package_log" 2>&1 &
package=$!
status=0
.venv/bin/pytest --ignore=tests/package || status=$?
package_status=0
wait "$package" || package_status=$?
echo "--- tests/package (ran beside the suites above) ---"
cat "$package_log"
[ "$status" -ne 0 ] && exit "$status"
exit "$package_status"
