"""The test rig's second Asterisk (instance b) beside the first: ports, separation, TLS AMI."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time

import pytest

from testpbx import pbx
from tests.pbxb import PBXB

pytestmark = pytest.mark.pbx


def setting(cli_output: str, name: str) -> str:
    """One value of ``core show settings`` (``  PBX UUID:    ...``)."""
    for line in cli_output.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in:\n{cli_output}")


def channels(instance: str) -> list[list[str]]:
    """``core show channels concise`` of one instance, split into fields."""
    return [line.split("!") for line in pbx.cli("core show channels concise", instance=instance).splitlines() if line]


def wait_for(check: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def header(reply: str, name: str) -> str:
    for line in reply.split("\r\n"):
        key, _, value = line.partition(": ")
        if key == name:
            return value
    raise AssertionError(f"no {name} in {reply!r}")


def test_both_instances_answer_at_once(pbx_b: PBXB) -> None:
    assert (pbx_b.host, pbx_b.ami_port, pbx_b.ami_tls_port, pbx_b.sip_port) == ("127.0.0.1", 5039, 5040, 5080)
    replies = {name: pbx.ami_command("Action: CoreSettings", instance=name) for name in ("a", "b")}
    for reply in replies.values():
        assert header(reply, "Response") == "Success"
        assert header(reply, "AsteriskVersion").startswith("22.")
        assert header(reply, "CoreHTTPenabled") == "No"
    settings = {name: pbx.cli("core show settings", instance=name) for name in ("a", "b")}
    assert setting(settings["a"], "Configuration file") == "/etc/asterisk/asterisk.conf"
    assert setting(settings["b"], "Configuration file") == "/etc/asterisk-b/asterisk.conf"
    for name in ("Run/Sockets directory", "VarLib directory", "Spool directory", "Log directory"):
        assert setting(settings["b"], name) == setting(settings["a"], name) + "-b"
    assert setting(settings["a"], "PBX UUID") != setting(settings["b"], "PBX UUID")  # two databases
    assert "127.0.0.1:5080" in pbx_b.cli("pjsip show transports")
    assert "127.0.0.1:5060" in pbx.cli("pjsip show transports")
    assert "8001/sip:" in pbx.cli("pjsip show contacts")  # a's phone still registers beside b


def test_the_command_line_reports_instance_b(pbx_b: PBXB) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "testpbx", "status", "--instance", "b"], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["built: yes", "asterisk: yes", "ami: yes"]


def test_a_local_channel_on_b_is_not_on_a(pbx_b: PBXB) -> None:
    reply = pbx_b.ami_command(
        "Action: Originate", f"Channel: Local/7001@{pbx_b.context}", "Application: Wait", "Data: 30", "Async: true"
    )
    assert header(reply, "Response") == "Success"
    try:
        wait_for(lambda: [c[5] for c in channels("b") if c[0].startswith("Local/7001@branch-")] == ["Wait"] * 2)
        on_b = sorted(c for c in channels("b") if c[0].startswith("Local/7001@branch-"))
        assert [(c[1], c[2], c[4], c[5]) for c in on_b] == [("branch", "7001", "Up", "Wait")] * 2
        assert not [c for c in channels("a") if "@branch" in c[0]]
    finally:
        pbx_b.hangup_all()
    assert "0 active channels" in pbx_b.cli("core show channels")


def test_7002_rings_without_answering(pbx_b: PBXB) -> None:
    pbx_b.ami_command("Action: Originate", "Channel: Local/7002@branch", "Application: Wait", "Data: 30", "Async: true")
    try:
        wait_for(lambda: any(c[0].endswith(";2") and c[5] == "Wait" for c in channels("b") if "7002@" in c[0]))
        states = sorted((c[0].rpartition(";")[2], c[4]) for c in channels("b") if c[0].startswith("Local/7002@"))
        assert states == [("1", "Ringing"), ("2", "Ring")]
    finally:
        pbx_b.hangup_all()


def test_the_hint_on_b_follows_its_custom_device(pbx_b: PBXB) -> None:
    def state() -> tuple[str, str]:
        reply = pbx_b.ami_command("Action: ExtensionState", "Exten: 7100", "Context: branch")
        return header(reply, "Status"), header(reply, "Hint")

    assert state() == ("0", "Custom:branch1")  # Idle after boot
    try:
        pbx_b.ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:branch1)", "Value: INUSE")
        assert state() == ("1", "Custom:branch1")
    finally:
        pbx_b.ami_command("Action: Setvar", "Variable: DEVICE_STATE(Custom:branch1)", "Value: NOT_INUSE")
    assert state() == ("0", "Custom:branch1")


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
def test_the_tls_ami_port_is_verified_against_the_ca(pbx_b: PBXB, server_hostname: str) -> None:
    assert pbx_b.ca_file == pbx.tls_ca_file("b") and pbx_b.ca_file.is_file()
    context = ssl.create_default_context(cafile=str(pbx_b.ca_file))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    with (
        socket.create_connection((pbx_b.host, pbx_b.ami_tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        cert = tls.getpeercert()
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        assert ("DNS", "localhost") in cert["subjectAltName"]
        tls.settimeout(5)
        assert tls.recv(100).startswith(b"Asterisk Call Manager/")
        tls.sendall(f"Action: Login\r\nUsername: {pbx_b.user}\r\nSecret: {pbx_b.secret}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += tls.recv(4096)
        assert header(reply.decode(), "Response") == "Success"
        assert header(reply.decode(), "Message") == "Authentication accepted"
    reply = pbx_b.ami_command("Action: CoreSettings", tls=True)
    assert header(reply, "AsteriskVersion").startswith("22.")


def test_the_tls_certificate_is_not_trusted_without_the_ca(pbx_b: PBXB) -> None:
    context = ssl.create_default_context()  # the system's CAs only
    with (
        socket.create_connection((pbx_b.host, pbx_b.ami_tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_stopping_b_leaves_a_answering(pbx_b: PBXB) -> None:
    try:
        pbx.stop("b")
        assert pbx.status("b") == {"built": True, "asterisk": False, "ami": False}
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((pbx_b.host, pbx_b.ami_port), timeout=2).close()
        assert pbx.ami_ready()
        assert pbx.cli("core show version").startswith("Asterisk 22.")
        assert pbx.status()["phone_registered"]
    finally:
        pbx.start("b")  # for the tests after this one
    assert pbx.ami_ready(instance="b")
