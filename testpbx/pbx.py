"""The project's test PBX: Asterisk 22 (Debian sid) in a chroot, plus a baresip phone.

Debian 12 has no asterisk package, and sid's needs sid's libc, so both run
inside a minimal sid chroot kept in ``.testpbx/root`` (ignored by git; built
once per machine, reused after). Everything listens on 127.0.0.1 only.

Commands (as root): ``python3 -m testpbx build|start|stop|status|restart``.
The pytest fixture in ``tests/conftest.py`` uses :func:`start` and :func:`stop`.

A second Asterisk, instance ``b``, runs beside it in the same chroot on other
ports (``--instance b``; ``instance="b"`` in the functions below); see
:mod:`testpbx.instance_b` and the fixture in ``tests/pbxb.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STATE_DIR = Path(os.environ.get("SALARA_TESTPBX_DIR", REPO / ".testpbx"))
ROOT = STATE_DIR / "root"
PACKAGES = ("asterisk", "baresip-core")

AMI_HOST = "127.0.0.1"
AMI_PORT = 5038
AMI_USER = "crm"
AMI_SECRET = "crmsecret"
PHONE_ENDPOINT = "8001"
INSTANCES = ("a", "b")
"""``a`` is the first instance (the default everywhere), ``b`` the second."""
AMI_PORTS = {"a": AMI_PORT, "b": 5039}
AMI_TLS_PORT_B = 5040
_spawned: set[str] = set()  # instances this process started (see stop())


def _log(msg: str) -> None:
    print(f"testpbx: {msg}", file=sys.stderr, flush=True)


def _host_mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 or one-line format)."""
    candidates = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"(?m)^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+)", text):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def _run(cmd: list[str], **kwargs: object) -> None:
    _log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def _chroot(*cmd: str) -> list[str]:
    return ["chroot", str(ROOT), *cmd]


def is_built() -> bool:
    return all((ROOT / p).exists() for p in ("usr/sbin/asterisk", "usr/bin/baresip"))


def build() -> None:
    """Create the sid chroot with asterisk and baresip-core, unless it exists."""
    if is_built():
        _log(f"chroot present in {ROOT}")
        return
    if os.geteuid() != 0:
        raise SystemExit("testpbx: building the chroot needs root")
    if not shutil.which("debootstrap"):
        _run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"])
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if not (ROOT / "usr/bin/apt-get").exists():
        shutil.rmtree(ROOT, ignore_errors=True)
        _run(["debootstrap", "--variant=minbase", "sid", str(ROOT), _host_mirror()])
    # The archive's Release file can be older than this machine's clock.
    (ROOT / "etc/apt/apt.conf.d/99salara-testpbx").write_text(
        'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n'
    )
    # Packages must not start services inside the chroot.
    policy = ROOT / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(_chroot("apt-get", "update"), env=env)
    _run(_chroot("apt-get", "install", "-y", "--no-install-recommends", *PACKAGES), env=env)
    _run(_chroot("apt-get", "clean"), env=env)
    _log("chroot built")


def _install_config() -> None:
    """Copy the project's Asterisk and baresip configuration into the chroot."""
    etc = ROOT / "etc/asterisk"
    if etc.exists():
        shutil.rmtree(etc)
    etc.mkdir(parents=True)
    moddirs = sorted(ROOT.glob("usr/lib/*/asterisk/modules"))
    moddir = "/" + str(moddirs[0].relative_to(ROOT)) if moddirs else "/usr/lib/asterisk/modules"
    for src in (HERE / "asterisk").glob("*.conf"):
        text = src.read_text()
        if src.name == "asterisk.conf":
            text = re.sub(r"(?m)^astmoddir\s*=>.*$", f"astmoddir => {moddir}", text)
        (etc / src.name).write_text(text)
    phone = ROOT / "etc/baresip-8001"
    phone.mkdir(parents=True, exist_ok=True)
    for src in (HERE / "baresip").iterdir():
        shutil.copy(src, phone / src.name)
    for sub in ("var/run/asterisk", "var/log/asterisk", "var/lib/asterisk", "var/spool/asterisk"):
        (ROOT / sub).mkdir(parents=True, exist_ok=True)


def _pidfile(name: str) -> Path:
    return STATE_DIR / f"{name}.pid"


def _pid(name: str) -> int | None:
    try:
        pid = int(_pidfile(name).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return None
    return pid


def _spawn(name: str, cmd: list[str]) -> int:
    log = open(STATE_DIR / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _pidfile(name).write_text(str(proc.pid))
    return proc.pid


def _instance_b() -> types.ModuleType:
    from testpbx import instance_b  # imported late: it imports this module

    return instance_b


def _check(instance: str) -> str:
    if instance not in INSTANCES:
        raise ValueError(f"testpbx: no instance {instance!r} (there are {', '.join(INSTANCES)})")
    return instance


def tls_ca_file(instance: str = "b") -> Path:
    """The CA file that verifies ``instance``'s AMI TLS certificate (made on first use; only b has TLS)."""
    if _check(instance) != "b":
        raise ValueError("testpbx: only instance b has AMI over TLS")
    return Path(_instance_b().ensure_certificates())


def ami_command(
    *lines: str, timeout_s: float = 5.0, instance: str = "a", port: int | None = None, tls: bool = False
) -> str:
    """Log in to AMI, send one action (header lines), return the raw reply text.

    A deliberately plain client, independent of salara's own AMI code, so the
    test harness does not depend on what it tests. ``instance`` picks the PBX
    (its plain AMI port, or with ``tls`` instance b's TLS port, verified against
    :func:`tls_ca_file`); ``port`` overrides the port.
    """
    context = ssl.create_default_context(cafile=str(tls_ca_file(instance))) if tls else None
    if port is None:
        port = AMI_TLS_PORT_B if tls else AMI_PORTS[_check(instance)]
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((AMI_HOST, port), timeout=timeout_s))
        if context is not None:
            sock = stack.enter_context(context.wrap_socket(sock, server_hostname=AMI_HOST))
        buf = b""

        def read_until(marker: bytes) -> bytes:
            nonlocal buf
            deadline = time.monotonic() + timeout_s
            while marker not in buf:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {marker!r} from AMI")
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("AMI closed the connection")
                buf += chunk
            head, _, buf = buf.partition(marker)
            return head

        read_until(b"\r\n")
        sock.sendall(
            f"Action: Login\r\nActionID: l\r\nUsername: {AMI_USER}\r\nSecret: {AMI_SECRET}\r\n"
            "Events: off\r\n\r\n".encode()
        )
        if b"Success" not in read_until(b"\r\n\r\n"):
            raise ConnectionError("AMI login failed")
        sock.sendall(("\r\n".join([*lines, "ActionID: q"]) + "\r\n\r\n").encode())
        while True:
            msg = read_until(b"\r\n\r\n")
            if b"ActionID: q" in msg:
                return msg.decode(errors="replace")


def cli(command: str, instance: str = "a") -> str:
    """Run one Asterisk CLI command through ``instance``'s AMI and return its output lines."""
    reply = ami_command("Action: Command", f"Command: {command}", instance=instance)
    return "\n".join(line[len("Output: ") :] for line in reply.split("\r\n") if line.startswith("Output: "))


def hangup_all(timeout_s: float = 5.0, instance: str = "a") -> None:
    """Hang up every channel of ``instance`` and wait (bounded) until it has none left."""
    cli("channel request hangup all", instance=instance)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and "0 active channels" not in cli("core show channels", instance=instance):
        time.sleep(0.1)


def ami_ready(instance: str = "a") -> bool:
    """Whether ``instance``'s AMI answers and its Asterisk is fully booted."""
    try:
        return "fully booted" in cli("core waitfullybooted", instance=instance).lower()
    except (OSError, TimeoutError, ConnectionError):
        return False


def _wait(what: str, check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"testpbx: {what} not ready after {timeout_s} s")


def phone_registered() -> bool:
    try:
        return f"{PHONE_ENDPOINT}/sip:" in cli("pjsip show contacts")
    except (OSError, TimeoutError, ConnectionError):
        return False


def start_asterisk() -> None:
    if _pid("asterisk"):
        _wait("AMI", ami_ready, 30)
        return
    if ami_ready():
        raise SystemExit(
            f"testpbx: another Asterisk already answers on {AMI_HOST}:{AMI_PORT} (not this checkout's); stop it first"
        )
    _install_config()
    _spawn("asterisk", _chroot("/usr/sbin/asterisk", "-f", "-n"))
    _wait("AMI", ami_ready, 30)
    after_boot()
    _log("asterisk fully booted")


def after_boot() -> None:
    """Bring device states to where tests expect them after (re)boot."""
    # Queue 710's agent is available: its state interface is this Custom device.
    # Queue:710_avail reads InUse after boot until a member's state *changes*.
    for state in ("INUSE", "NOT_INUSE"):
        ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:agent1)", f"Value: {state}")


def start_phone() -> None:
    if not _pid("baresip"):
        _spawn("baresip", _chroot("/usr/bin/baresip", "-f", "/etc/baresip-8001"))
    _wait("phone 8001 registration", phone_registered, 20)
    # After an Asterisk restart the hint reads Unavailable until the first qualify.
    _wait("phone 8001 idle", phone_idle, 20)
    _log("phone 8001 registered")


def phone_idle() -> bool:
    """Whether the phone's hint (8001@phones) reads Idle."""
    try:
        reply = ami_command("Action: ExtensionState", f"Exten: {PHONE_ENDPOINT}", "Context: phones")
    except (OSError, TimeoutError, ConnectionError):
        return False
    return "\r\nStatus: 0\r\n" in reply + "\r\n"


def start(instance: str = "a") -> None:
    """Start Asterisk and the phone (idempotent); return when both are ready.

    ``instance="b"`` starts only the second Asterisk (it has no phone).
    """
    if not is_built():
        raise SystemExit("testpbx: not built; run `python3 -m testpbx build` (as root) first")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if _check(instance) == "b":
        if not _pid(_instance_b().NAME):
            _spawned.add("b")
        _instance_b().start()
        return
    start_asterisk()
    start_phone()


def _terminate(name: str, timeout_s: float) -> None:
    pid = _pid(name)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid(name):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _pidfile(name).unlink(missing_ok=True)


def stop_asterisk() -> None:
    if _pid("asterisk"):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                _chroot("/usr/sbin/asterisk", "-rx", "core stop now"),
                timeout=10,
                capture_output=True,
            )
    _terminate("asterisk", 10)


def stop(instance: str = "a") -> None:
    """Stop the phone and Asterisk. The phone goes first so it can un-register.

    ``instance="b"`` stops only the second Asterisk. Stopping the first also
    stops instance b if this process started it (a test session's teardown
    never leaves it behind); b started by another process is left alone.
    """
    if _check(instance) == "b" or "b" in _spawned:
        _instance_b().stop()
        _spawned.discard("b")
        if instance == "b":
            return
    _terminate("baresip", 3)
    stop_asterisk()


def status(instance: str = "a") -> dict[str, bool]:
    """What runs and answers: the chroot, Asterisk, AMI and (instance a) the phone."""
    if _check(instance) == "b":
        return _instance_b().status()  # type: ignore[no-any-return]
    return {
        "built": is_built(),
        "asterisk": _pid("asterisk") is not None,
        "ami": ami_ready(),
        "phone": _pid("baresip") is not None,
        "phone_registered": phone_registered(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m testpbx", description=__doc__)
    parser.add_argument("command", choices=["build", "start", "stop", "restart", "status"])
    parser.add_argument("--instance", choices=INSTANCES, default="a", help="a (default) or the second Asterisk, b")
    args = parser.parse_args(argv)
    if args.command == "build":
        build()
    elif args.command == "start":
        build()
        start(args.instance)
    elif args.command == "stop":
        stop(args.instance)
    elif args.command == "restart":
        stop(args.instance)
        start(args.instance)
    else:
        for key, value in status(args.instance).items():
            print(f"{key}: {'yes' if value else 'no'}")
    return 0
