"""The Debian package in a fresh Debian 12 system: build, install with apt, check, serve, remove, purge.

``packaging/build-deb.sh`` builds the .deb; a bookworm ``minbase`` chroot
(debootstrap, with systemd as any PBX has it; built once into
``build/package-test/bookworm`` and copied fresh for every run) gets it with
``apt-get install ./salara_*.deb``. There: ``systemd-analyze verify`` and
``security --offline=yes`` on the installed unit, ``salara check`` on the
shipped config, ``salara serve`` as the ``salara`` user (not through
systemd, which is not PID 1 in a chroot) says ``READY=1`` on a socket of
this test's own and answers ``/health`` on 127.0.0.1, ``salara route set``
writes the file salara owns and leaves the conffile as shipped; then
``dpkg -r`` keeps the config and the state and ``dpkg -P`` leaves nothing
but the system user (Debian Policy 9.2.2) and the dependencies.

Needs root and the network (Debian's mirror); ``scripts/setup.sh`` installs
debootstrap and dpkg-dev. Linked to the host's network namespace: every
address salara is given is on loopback, AMI a port nothing listens on.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testpbx.pbx import _host_mirror
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "package-test"
BASE = CACHE / "bookworm"
BASE_PACKAGES = ("systemd", "procps")
"""Beside minbase: what a PBX that runs salara has anyway (systemd-analyze, kill for ExecReload)."""
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}

STATE_PREFIXES = (
    "/var/lib/dpkg/",
    "/var/lib/apt/",
    "/var/cache/",
    "/var/log/",
    "/usr/lib/python3.11/",  # the interpreter's own byte-compiled modules (py3compile)
    "/usr/lib/python3/",
    "/usr/local/lib/python3.11",  # python3.11's postinst: the local site directory
    "/var/lib/python",
)
"""Where apt, dpkg and the dependencies' maintainer scripts keep state: not salara's leftovers."""
MADE_BY_DEPENDENCIES = frozenset({"/etc/inputrc"})
"""Made by a dependency's maintainer script (readline-common), not listed by ``dpkg -L``."""
USER_FILES = frozenset(
    f"/etc/{name}{suffix}" for name in ("passwd", "group", "shadow", "gshadow") for suffix in ("", "-")
)
"""The system user salara stays after a purge (Debian Policy 9.2.2)."""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and apt need root")


def run(*cmd: str | Path, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in cmd], capture_output=True, text=True, timeout=timeout_s, env=ENV, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def in_root(root: Path, *cmd: str, user: str | None = None, **kwargs: float | bool) -> subprocess.CompletedProcess[str]:
    chroot = ["chroot", *([f"--userspec={user}:{user}"] if user else []), str(root)]
    return run(*chroot, *cmd, **kwargs)  # type: ignore[arg-type]


def base_system() -> Path:
    """The cached bookworm minbase with systemd (built once, as testpbx builds its sid chroot)."""
    ready = BASE / ".salara-package-test-ready"
    if ready.exists():
        return BASE
    shutil.rmtree(BASE, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    run("debootstrap", "--variant=minbase", "bookworm", BASE, _host_mirror(), timeout_s=900)
    (BASE / "etc/apt/apt.conf.d/99salara-package-test").write_text(
        'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n'
    )
    policy = BASE / "usr/sbin/policy-rc.d"  # no service starts inside the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    in_root(BASE, "apt-get", "update", timeout_s=600)
    in_root(BASE, "apt-get", "install", "-y", "--no-install-recommends", *BASE_PACKAGES, timeout_s=900)
    in_root(BASE, "apt-get", "clean")
    ready.touch()
    return BASE


@pytest.fixture(scope="module")
def deb() -> Path:
    out = CACHE / "deb"
    shutil.rmtree(out, ignore_errors=True)
    run(REPO / "packaging/build-deb.sh", out, timeout_s=900)
    (built,) = out.glob("salara_*.deb")
    return built


@pytest.fixture
def root() -> Iterator[Path]:
    """A fresh copy of the base system (nothing is mounted in it: removing it is a plain rm)."""
    fresh = CACHE / f"root-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    run("cp", "-a", base_system(), fresh)
    yield fresh
    shutil.rmtree(fresh, ignore_errors=True)


def paths(root: Path) -> set[str]:
    """Every path in ``root`` as the system inside sees it (``/proc``, ``/dev``, ``/run``, ``/tmp`` left out)."""
    found: set[str] = set()
    skipped = {root / name for name in ("proc", "sys", "dev", "run", "tmp")}
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = [name for name in dirs if here / name not in skipped]
        for name in dirs + files:
            found.add("/" + str((here / name).relative_to(root)))
    return found


def packages(root: Path) -> set[str]:
    return set(in_root(root, "dpkg-query", "-W", "-f", "${Package}\\n").stdout.split())


def owned_by(root: Path, names: set[str]) -> set[str]:
    """The paths the packages ``names`` own, as found on disk (``/lib`` is ``/usr/lib`` on merged /usr)."""
    owned: set[str] = set()
    for listed in in_root(root, "dpkg", "-L", *sorted(names)).stdout.splitlines() if names else []:
        real = os.path.realpath(root / listed.lstrip("/"))
        owned.add("/" + os.path.relpath(real, root))
        owned.add(listed)
    return owned


def ldconfig_link(root: Path, path: str) -> bool:
    """Whether ``path`` is a shared library's soname link, as ldconfig makes them (``libx.so.3 -> libx.so.3.0``)."""
    name = Path(path).name
    return (root / path.lstrip("/")).is_symlink() and name.startswith("lib") and ".so." in name


def wait_ready(sock: socket.socket, timeout_s: float) -> list[bytes]:
    messages: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not any(m.startswith(b"READY=1") for m in messages):
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            messages.append(sock.recv(4096))
        except TimeoutError:
            break
    return messages


def serve_once(root: Path) -> None:
    """``salara serve`` as user salara on the shipped config: READY=1 on our socket, then ``/health``."""
    api, agi, ami = free_port(), free_port(), free_port()
    notify_dir = root / "run/salara-package-test"
    notify_dir.mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_dir / "notify"))
    os.chmod(notify_dir / "notify", 0o777)
    command = [
        "chroot", "--userspec=salara:salara", str(root), "env",
        f"SALARA_URL_REST_SERVER=127.0.0.1:{api}", f"SALARA_AGI_LISTEN=127.0.0.1:{agi}",
        f"SALARA_AMI_PORT={ami}", "NOTIFY_SOCKET=/run/salara-package-test/notify",
        "salara", "-c", "/etc/salara/salara.conf", "serve",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        messages = wait_ready(sock, 60)
        assert any(m.startswith(b"READY=1") for m in messages), messages
        health = httpx.get(f"http://127.0.0.1:{api}/health", timeout=10)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = httpx.get(f"http://127.0.0.1:{api}/ready", timeout=10)
        assert ready.status_code == 503  # AMI is down: salara serves all the same
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        sock.close()
        shutil.rmtree(notify_dir)
    assert proc.returncode == 0, output
    assert (root / "var/lib/salara/outbox.db").exists()  # the state directory is the user's


@pytest.mark.timeout(1200)  # on a fresh machine: debootstrap and the wheels first (minutes, mostly the mirror)
def test_the_package_installs_serves_and_goes_away_cleanly(deb: Path, root: Path) -> None:
    before, installed_before = paths(root), packages(root)
    shutil.copy(deb, root / "tmp" / deb.name)
    in_root(root, "apt-get", "install", "-y", "--no-install-recommends", f"/tmp/{deb.name}", timeout_s=600)
    (root / "tmp" / deb.name).unlink()

    # What it installed, where and whose
    assert os.readlink(root / "usr/bin/salara") == "/opt/salara/bin/salara"
    assert os.readlink(root / "opt/salara/bin/python3.11") == "/usr/bin/python3.11"  # Debian's interpreter
    assert in_root(root, "getent", "passwd", "salara").stdout.split(":")[6].strip() == "/usr/sbin/nologin"
    assert in_root(root, "stat", "-c", "%U:%G %a", "/etc/salara/salara.conf").stdout.split() == ["root:salara", "640"]
    assert in_root(root, "stat", "-c", "%U:%G %a", "/var/lib/salara").stdout.split() == ["salara:salara", "750"]
    conffiles = in_root(root, "dpkg-query", "-W", "-f", "${Conffiles}", "salara").stdout.split()
    assert conffiles[0] == "/etc/salara/salara.conf"
    assert run("zcat", root / "usr/share/man/man8/salara.8.gz").stdout.startswith(".TH SALARA 8")
    assert "complete" in (root / "usr/share/bash-completion/completions/salara").read_text()

    # The unit, as the system's own systemd reads it
    in_root(root, "systemd-analyze", "verify", "--man=no", "/lib/systemd/system/salara.service")
    security = in_root(root, "systemd-analyze", "security", "--offline=yes", "/lib/systemd/system/salara.service")
    summary = [line for line in security.stdout.splitlines() if "Overall exposure level" in line]
    print(summary[0] if summary else security.stdout)
    assert summary and any(level in summary[0] for level in ("OK", "SAFE")), security.stdout

    # The shipped config checks clean, and serves
    assert in_root(root, "salara", "-c", "/etc/salara/salara.conf", "check", user="salara").stdout.strip() == "ok"
    serve_once(root)

    # A route goes to the file salara writes; the conffile stays as shipped
    in_root(root, "salara", "-c", "/etc/salara/salara.conf", "route", "set", "5559999", "8002")
    assert "5559999:8002" in (root / "etc/salara/local/salara.conf").read_text()
    assert in_root(root, "dpkg", "--verify", "salara").stdout == ""
    assert "5559999:8002" in in_root(root, "salara", "-c", "/etc/salara/salara.conf", "route", "show").stdout

    # Remove: the program goes, the config and the state stay
    in_root(root, "dpkg", "-r", "salara")
    for gone in ("opt/salara", "usr/bin/salara", "lib/systemd/system/salara.service", "usr/share/doc/salara"):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), gone
    for kept in ("etc/salara/salara.conf", "etc/salara/local/salara.conf", "var/lib/salara/outbox.db"):
        assert (root / kept).exists(), kept

    # Purge: nothing of salara's is left but its user
    in_root(root, "dpkg", "-P", "salara")
    dependencies = packages(root) - installed_before
    assert "salara" not in packages(root) and "python3.11" in dependencies
    left = paths(root) - before - owned_by(root, dependencies) - USER_FILES
    left = {path for path in left - MADE_BY_DEPENDENCIES if not path.startswith(STATE_PREFIXES)}
    left = {path for path in left if not ldconfig_link(root, path)}
    assert not left, "left after purge:\n" + "\n".join(sorted(left))
    assert in_root(root, "getent", "passwd", "salara").returncode == 0
    assert in_root(root, "dpkg-statoverride", "--list", check=False).stdout == ""
