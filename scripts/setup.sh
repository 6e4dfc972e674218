#!/usr/bin/env bash
# Install everything salara and its tests need on Debian 12, as root; idempotent.
#   - Debian packages: python3 (3.11+) with venv, Debian's python3.11-venv (the .deb), debootstrap, curl,
#     chromium and chromium-driver (the web console's browser tests), postgresql (the PostgreSQL store's
#     tests start a throwaway cluster; no system cluster is made)
#   - .venv with salara and its development tools (and promtool, from Debian's prometheus package)
#   - the test PBX (Asterisk 22 + a SIP phone in a Debian sid chroot, .testpbx/)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)  # the HTTPS test makes a certificate
command -v wrk >/dev/null || need+=(wrk)  # the HTTP benchmarks' load generator (bench/connections.py)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
# The web console's tests (tests/browser) drive headless Chromium through chromedriver.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# The Debian package (packaging/build-deb.sh) is built on Debian's own interpreter.
/usr/bin/python3.11 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3.11-venv)
# The PostgreSQL store's tests start a throwaway cluster with Debian's initdb and pg_ctl (tests/pgcluster.py);
# no system cluster is made or started (create_main_cluster = false, before the package is installed).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/salara-tests.conf
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: salara needs Python 3.11 or newer, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
pip_log=.venv/pip-install.log
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[dev]'; } >"$pip_log" 2>&1; then
  cat "$pip_log"
  echo "setup: pip install failed (log above)" >&2
  exit 1
fi

./docs/prometheus/promtool.sh >/dev/null  # promtool checks the alert rules and the metrics (tests)
.venv/bin/python -m testpbx build
echo "setup: done"
