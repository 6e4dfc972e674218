#!/usr/bin/env bash
# Build the Debian package of salara: OUTDIR/salara_<version>_<arch>.deb (OUTDIR: dist).
#
#   packaging/build-deb.sh [OUTDIR]      (make deb)
#
# salara and every Python package it depends on are installed from wheels made
# here (pip wheel; the only step that uses the network) into a virtualenv of
# Debian's /usr/bin/python3.11 at /opt/salara, byte-compiled, and packed with
# dpkg-deb. Installing the package fetches nothing but its Debian dependencies.
# Needs python3.11-venv and dpkg-dev (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${1:-dist}
python=/usr/bin/python3.11
say() { echo "build-deb: $*" >&2; }

[ -x "$python" ] || { say "needs Debian's $python (apt-get install python3.11-venv)"; exit 1; }
"$python" -c 'import ensurepip, venv' 2>/dev/null || { say "needs python3.11-venv"; exit 1; }
command -v dpkg-deb >/dev/null || { say "needs dpkg-deb (dpkg)"; exit 1; }

version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)
work=$repo/build/deb
root=$work/root
venv=$root/opt/salara
rm -rf "$work"
mkdir -p "$work/wheels" "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

say "wheels of salara $version and its dependencies"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip wheel --quiet --wheel-dir "$work/wheels" "$repo" >"$work/pip-wheel.log" 2>&1 \
    || { cat "$work/pip-wheel.log"; say "pip wheel failed"; exit 1; }

say "virtualenv at /opt/salara ($python)"
"$python" -m venv --without-pip "$venv"
"$work/tools/bin/python" -m pip --python "$venv/bin/python" install --quiet --no-index --no-compile \
    --find-links "$work/wheels" salara >"$work/pip-install.log" 2>&1 \
    || { cat "$work/pip-install.log"; say "pip install failed"; exit 1; }
# The venv was made at its place in the staging tree: name /opt/salara instead
# (script shebangs, activate scripts, pyvenv.cfg); drop what names the build.
grep -rlI --null "$root" "$venv" | xargs -0 -r sed -i "s|$root||g"
find "$venv" -name direct_url.json -path '*.dist-info/*' -delete
find "$venv" -name '__pycache__' -prune -exec rm -rf {} +
# Byte-compiled once, here: nothing under /opt is written at run time (and
# dpkg removes every file it installed). Unchecked hashes: only dpkg changes the sources.
"$venv/bin/python" -m compileall -q -j0 --invalidation-mode unchecked-hash -s "$root" -p / "$venv/lib" >/dev/null

say "files"
install -d "$root/usr/bin" "$root/etc/salara" "$root/lib/systemd/system" "$root/usr/share/man/man8" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/doc/salara"
ln -s /opt/salara/bin/salara "$root/usr/bin/salara"
install -m 0644 packaging/systemd/salara.service "$root/lib/systemd/system/salara.service"
{
    sed '/^\[general\]$/q' salara.conf.example
    cat <<'CONF'
; packaged: "salara route set" and "salara token create" write new routes and
; tokens to this file (included at the end of this one), so upgrades never ask
; about changes to this file you did not make yourself
edit_file=local/salara.conf
CONF
    sed '1,/^\[general\]$/d' salara.conf.example
    printf '%s\n' ';-------------------------------------------------------------------------------' \
        '; routes and tokens that salara writes ([general] edit_file)' '#tryinclude "local/salara.conf"'
} >"$root/etc/salara/salara.conf"
chmod 0640 "$root/etc/salara/salara.conf"
"$venv/bin/python" packaging/manpage.py | gzip -9n >"$root/usr/share/man/man8/salara.8.gz"
_SALARA_COMPLETE=bash_source "$venv/bin/python" "$venv/bin/salara" \
    >"$root/usr/share/bash-completion/completions/salara"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/salara/copyright"
gzip -9nc CHANGELOG.md >"$root/usr/share/doc/salara/changelog.gz"
gzip -9nc README.md >"$root/usr/share/doc/salara/README.md.gz"
gzip -9nc salara.conf.example >"$root/usr/share/doc/salara/salara.conf.example.gz"

say "control"
install -d "$root/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
echo /etc/salara/salara.conf >"$root/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: salara
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-salara maintainers <root@localhost>}
Installed-Size: $installed_kb
Depends: python3.11, adduser
Section: comm
Priority: optional
Description: Asterisk to CRM bridge: call control API, call events, call routing
 salara runs beside Asterisk and gives a CRM an HTTP API to place calls, send
 SIP messages and read extension, peer and channel states; posts call events
 to the CRM as they happen; and routes incoming calls (FastAGI) to the
 extension the CRM names for the caller. A drop-in for the Asterisk module
 of the same name: same port, same JSON, same salara.conf.
 .
 It runs in its own virtualenv under /opt/salara, on Debian's Python 3.11,
 as the systemd unit salara.service (user salara).
CONTROL
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$root/DEBIAN/md5sums"

deb="$out/salara_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z6 --build "$root" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1))"
