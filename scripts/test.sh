#!/usr/bin/env bash
# Run every test (unit, protocol, real-Asterisk integration) and the linters.
# Installs what is missing first (scripts/setup.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check src tests testpbx bench
.venv/bin/mypy
.venv/bin/pytest "$@"
