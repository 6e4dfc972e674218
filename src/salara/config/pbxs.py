"""The PBXs' sections: ``[ami]`` (the PBX named ``default``), ``[ami NAME]`` for each further one, and ``[agi]``.

Pure, like :mod:`salara.config.schema`. Each ``[ami NAME]`` has the keys
of ``[ami]``; its ``contexts`` are the dialplan contexts it serves (a
request in one goes to it, :mod:`salara.pbxs`), and its calls' ids start
with ``NAME:`` (:mod:`salara.calls.ids`). Its secret may come from
``SALARA_AMI_<NAME>_SECRET``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from salara.config.values import Flag, HostPort, Section, StrList, check_contexts, host_port, lowered

AMI_SECTION: Final = "ami "
"""Further PBXs are ``[ami NAME]`` sections; the name is read in lower case, as every section's."""
PBX_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,32}")
"""What an ``[ami NAME]`` may be called (``default`` excepted): it starts the PBX's call ids and its variables."""


def pbx_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an ``[ami NAME]``, or None."""
    if not PBX_NAME.fullmatch(name):
        return "a PBX name may hold only letters, digits and '_' (at most 32)"
    if name.lower() == "default":
        return "'default' is the [ami] section's PBX; name this one otherwise"
    return None


class Ami(Section):
    """``[ami]``: how salara reaches the Asterisk Manager Interface."""

    host: str = "127.0.0.1"
    port: int = Field(5038, gt=0, lt=65536)
    username: str = "salara"
    secret: str = ""
    auth: Annotated[Literal["md5", "plain"], BeforeValidator(lowered)] = "md5"
    ping_interval: float = Field(20.0, gt=0)
    reconnect_max: float = Field(5.0, gt=0)
    contexts: Annotated[StrList, AfterValidator(check_contexts)] = ()
    """Dialplan contexts this PBX serves (``[ami NAME]``): a request for one goes to it, the rest to ``default``."""
    tls: Flag = False
    """AMI over TLS (manager.conf ``tlsenable``); the certificate is verified for ``host``."""
    tls_ca: str = ""
    """PEM file of the CAs that sign the AMI certificate; empty: the system's."""


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return values


class Agi(Section):
    """``[agi]``: the FastAGI server that routes incoming calls."""

    listen: Annotated[HostPort, host_port(4573)] = HostPort("127.0.0.1", 4573)
    max_sessions: int = Field(200, ge=1, le=100_000)
    """FastAGI connections served at once (a routed call holds one up to curlopt_timeout seconds)."""
    header_timeout: float = Field(1.0, gt=0, le=60)
    """Seconds a new connection has to send its whole variable block (Asterisk sends it at once)."""
    allow: Annotated[StrList, AfterValidator(_networks)] = ()
    """The addresses (or networks) FastAGI connections may come from, the PBXs' (empty: loopback); others are closed."""
