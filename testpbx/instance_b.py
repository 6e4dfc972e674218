"""Instance b of the test PBX: a second Asterisk in the same chroot, on other ports.

It stands for a second PBX (say, a branch office) behind one salara. Its
configuration lives in ``/etc/asterisk-b`` inside the chroot and its
``asterisk.conf`` points every writable directory (run, spool, log, lib, db,
cache) at ``...-b`` directories, so the two instances never share a control
socket, pid file or database. It has no phone: tests reach its dialplan
(context ``branch``) with Local channels only.

Ports, all on 127.0.0.1: AMI 5039, AMI over TLS 5040 (certificate from
:func:`ensure_certificates`), PJSIP UDP 5080, RTP 21000-21999; no HTTP server.
The port numbers are also written in ``testpbx/asterisk-b/*.conf``.

Use it through :mod:`testpbx.pbx` (``start(instance="b")``, ``ami_command(...,
instance="b")``, ...) or ``python -m testpbx start|stop|status --instance b``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from testpbx import pbx

NAME = "asterisk-b"  # pid file and log in the state dir: asterisk-b.pid, asterisk-b.log
ETC = "/etc/asterisk-b"  # inside the chroot
CONFIG = f"{ETC}/asterisk.conf"
AMI_PORT = pbx.AMI_PORTS["b"]
AMI_TLS_PORT = pbx.AMI_TLS_PORT_B
SIP_PORT = 5080
CONTEXT = "branch"

HERE = pbx.HERE / "asterisk-b"
# Taken from the first instance's configuration unchanged (asterisk.conf is rewritten, the rest is b's own).
SHARED_FILES = ("modules.conf", "logger.conf", "stasis.conf", "ccss.conf")
# asterisk.conf keys whose directories must be instance b's own.
OWN_DIRS = re.compile(r"ast(etc|varlib|db|key|spool|run|log|cache)dir")

TLS_DIR = pbx.STATE_DIR / "tls-b"
CA_FILE = TLS_DIR / "ca.crt"
"""The self-signed CA that signed instance b's AMI TLS certificate (verify against it)."""
SERVER_CERT = TLS_DIR / "server.crt"
SERVER_KEY = TLS_DIR / "server.key"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates_valid() -> bool:
    if not all(p.is_file() for p in (CA_FILE, SERVER_CERT, SERVER_KEY)):
        return False
    try:  # still valid for at least a day, and signed by this CA
        _openssl("x509", "-checkend", "86400", "-noout", "-in", str(SERVER_CERT))
        _openssl("verify", "-CAfile", str(CA_FILE), str(SERVER_CERT))
    except subprocess.CalledProcessError:
        return False
    return True


def ensure_certificates() -> Path:
    """Make (once) a self-signed CA and a server certificate for 127.0.0.1 and localhost.

    The files stay in the state dir (``tls-b/``) and are reused while valid;
    returns the CA file's path.
    """
    if _certificates_valid():
        return CA_FILE
    if not shutil.which("openssl"):
        raise SystemExit("testpbx: instance b's TLS certificate needs openssl (./scripts/setup.sh installs it)")
    pbx._log(f"making instance b's TLS certificates in {TLS_DIR}")
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    ca_key = TLS_DIR / "ca.key"
    csr = TLS_DIR / "server.csr"
    ext = TLS_DIR / "server.ext"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
        "-keyout", str(ca_key), "-out", str(CA_FILE), "-subj", "/CN=salara testpbx CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-keyout", str(SERVER_KEY), "-out", str(csr), "-subj", "/CN=localhost",
    )  # fmt: skip
    ext.write_text(
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid,issuer\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(CA_FILE), "-CAkey", str(ca_key),
        "-set_serial", "0x" + secrets.token_hex(8), "-sha256", "-days", "3650",
        "-extfile", str(ext), "-out", str(SERVER_CERT),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()
    for key in (ca_key, SERVER_KEY):
        key.chmod(0o600)
    return CA_FILE


def _b_path(path: str) -> str:
    """``/var/lib/asterisk`` -> ``/var/lib/asterisk-b`` (and so on for each directory)."""
    return re.sub(r"/asterisk$", "/asterisk-b", path.rstrip("/"))


def _asterisk_conf(text: str, moddir: str) -> str:
    """The first instance's asterisk.conf with instance b's own writable directories."""

    def rewrite(match: re.Match[str]) -> str:
        key, value = match.group(1), match.group(2).strip()
        if key == "astmoddir":
            value = moddir
        elif OWN_DIRS.fullmatch(key):
            value = _b_path(value)
        return f"{key} => {value}"

    return re.sub(r"(?m)^(ast\w+)\s*=>\s*(.*)$", rewrite, text)


def _in_root(path: str) -> Path:
    """Where a path inside the chroot is on the host; an absolute symlink there (``/var/run -> /run``) stays inside."""
    here = pbx.ROOT
    for part in Path(path).parts[1:]:
        here = here / part
        if here.is_symlink():
            target = os.readlink(here)
            here = pbx.ROOT / target.lstrip("/") if target.startswith("/") else here.parent / target
    return here


def install_config() -> None:
    """Write ``/etc/asterisk-b`` (with the TLS files) and instance b's directories in the chroot."""
    root = pbx.ROOT
    etc = root / ETC.lstrip("/")
    if etc.exists():
        shutil.rmtree(etc)
    (etc / "tls").mkdir(parents=True)
    moddirs = sorted(root.glob("usr/lib/*/asterisk/modules"))
    moddir = "/" + str(moddirs[0].relative_to(root)) if moddirs else "/usr/lib/asterisk/modules"
    a_conf = pbx.HERE / "asterisk"
    (etc / "asterisk.conf").write_text(_asterisk_conf((a_conf / "asterisk.conf").read_text(), moddir))
    for name in SHARED_FILES:
        shutil.copy(a_conf / name, etc / name)
    for src in HERE.glob("*.conf"):
        shutil.copy(src, etc / src.name)
    ensure_certificates()
    for src in (CA_FILE, SERVER_CERT, SERVER_KEY):
        shutil.copy(src, etc / "tls" / src.name)
    (etc / "tls" / SERVER_KEY.name).chmod(0o600)
    for sub in ("/var/run", "/var/log", "/var/lib", "/var/spool", "/var/cache"):
        _in_root(f"{sub}/asterisk-b").mkdir(parents=True, exist_ok=True)
    # Sounds and music on hold are read-only data; share the first instance's.
    for shared in ("sounds", "moh"):
        link = root / "var/lib/asterisk-b" / shared
        if (root / "var/lib/asterisk" / shared).exists() and not os.path.lexists(link):
            link.symlink_to(f"/var/lib/asterisk/{shared}")


def _asterisk(*args: str) -> list[str]:
    return pbx._chroot("/usr/sbin/asterisk", "-C", CONFIG, *args)


def ami_ready() -> bool:
    """Whether instance b's AMI answers and Asterisk is fully booted."""
    return pbx.ami_ready(instance="b")


def start() -> None:
    """Start instance b (idempotent); return when its AMI answers and it is fully booted."""
    if pbx._pid(NAME):
        pbx._wait("instance b's AMI", ami_ready, 30)
        return
    if ami_ready():
        raise SystemExit(
            f"testpbx: another Asterisk already answers on {pbx.AMI_HOST}:{AMI_PORT} "
            "(not this checkout's instance b); stop it first"
        )
    install_config()
    pbx._spawn(NAME, _asterisk("-f", "-n"))
    pbx._wait("instance b's AMI", ami_ready, 30)
    after_boot()
    pbx._log("asterisk instance b fully booted")


def after_boot() -> None:
    """Give the Custom device behind hint 7100@branch a known state (Idle)."""
    pbx.ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:branch1)", "Value: NOT_INUSE", instance="b")


def stop() -> None:
    """Stop instance b: ``core stop now`` on its own control socket, then SIGTERM/SIGKILL."""
    if pbx._pid(NAME):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(_asterisk("-rx", "core stop now"), timeout=10, capture_output=True)
    pbx._terminate(NAME, 10)


def status() -> dict[str, bool]:
    """Whether instance b is built, running (its pid) and answering AMI."""
    return {"built": pbx.is_built(), "asterisk": pbx._pid(NAME) is not None, "ami": ami_ready()}
