#!/usr/bin/env bash
# Put promtool in .venv/bin, taken out of Debian's prometheus package with
# dpkg-deb -x: the Prometheus server is neither installed nor started.
# The tests run `promtool check rules` and `promtool check metrics` with it
# (tests/unit/test_metrics_rules.py). Idempotent; needs apt (Debian 12).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=.venv/bin/promtool
if [ -x "$target" ]; then
  exit 0
fi
mkdir -p .venv/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chown _apt "$work" 2>/dev/null || chmod 777 "$work"  # apt downloads as its own user
if ! apt-cache show prometheus >/dev/null 2>&1; then
  apt-get update -qq
fi
(cd "$work" && apt-get download -qq prometheus)
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
install -m 755 "$work/root/usr/bin/promtool" "$target"
"$target" --version | head -n 1
