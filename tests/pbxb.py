"""The second test Asterisk (instance b of the test PBX) as a session fixture: ``pbx_b``.

Registered in ``tests/conftest.py`` by importing :func:`pbx_b`. It starts
instance a too (through the ``asterisk`` fixture), so a test that asks for
``pbx_b`` has two PBXs behind 127.0.0.1: a on AMI 5038, b on AMI 5039 and
AMI over TLS 5040.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testpbx import instance_b, pbx


@dataclass(frozen=True)
class PBXB:
    """Where instance b answers and how to log in; the helpers talk to b only."""

    host: str
    ami_port: int
    ami_tls_port: int
    ca_file: Path
    """The CA that verifies the TLS port's certificate (for 127.0.0.1 and localhost)."""
    user: str
    secret: str
    sip_port: int
    context: str
    """The dialplan context tests call with Local channels (7001 answers, 7002 rings, 7100 is a hint)."""

    def ami_command(self, *lines: str, timeout_s: float = 5.0, tls: bool = False) -> str:
        """One AMI action on instance b (see :func:`testpbx.pbx.ami_command`)."""
        return pbx.ami_command(*lines, timeout_s=timeout_s, instance="b", tls=tls)

    def cli(self, command: str) -> str:
        """One CLI command on instance b; its output lines."""
        return pbx.cli(command, instance="b")

    def hangup_all(self, timeout_s: float = 5.0) -> None:
        """Hang up every channel on instance b and wait until none is left."""
        pbx.hangup_all(timeout_s, instance="b")


def pbx_b_info() -> PBXB:
    """Instance b's addresses and credentials (makes the TLS certificate if it does not exist yet)."""
    return PBXB(
        host=pbx.AMI_HOST,
        ami_port=instance_b.AMI_PORT,
        ami_tls_port=instance_b.AMI_TLS_PORT,
        ca_file=pbx.tls_ca_file("b"),
        user=pbx.AMI_USER,
        secret=pbx.AMI_SECRET,
        sip_port=instance_b.SIP_PORT,
        context=instance_b.CONTEXT,
    )


@pytest.fixture(scope="session")
def pbx_b(asterisk: None) -> Iterator[PBXB]:
    """Instance b of the test PBX, started once per session beside instance a; stopped at the end.

    An instance b someone else started before the session is used and left
    running, as the ``asterisk`` fixture does with instance a.
    """
    already_running = pbx.status("b")["asterisk"]
    pbx.start("b")
    yield pbx_b_info()
    if not already_running:
        pbx.stop("b")
