"""Reaching AMI: where it is, the TCP connect, the login and the wait for ``FullyBooted``.

The login follows Asterisk's "AMI Actions: Challenge" and "AMI Actions:
Login" (docs.asterisk.org). With ``auth="md5"`` salara asks for a
``Challenge`` (``AuthType: MD5``) and logs in with ``Key``, the hex MD5 of
the challenge followed by the secret, so the secret never crosses the wire;
with ``auth="plain"`` it sends ``Secret`` as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from salara.ami.messages import Response
from salara.errors import AMITimeout, AuthenticationError

log = logging.getLogger("salara.ami.client")

Fields = list[tuple[str, str | int]]
Send = Callable[[str, Fields], Awaitable[Response]]
"""``await send(action_name, fields)``: the answer to one action sent on the link being logged in."""


@dataclass(frozen=True, slots=True)
class AMISettings:
    """Where and how to reach AMI. Durations are in seconds."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "salara"
    secret: str = ""
    auth: Literal["md5", "plain"] = "md5"
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    boot_timeout_s: float = 10.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0
    tls: bool = False
    """AMI over TLS (manager.conf ``tlsenable``): the certificate is verified for ``host``."""
    tls_ca: str = ""
    """PEM file of the CAs to verify the certificate with; empty: the system's."""


def tls_context(settings: AMISettings) -> ssl.SSLContext | None:
    """The TLS client context of ``settings`` (certificate and host name verified), None without TLS.

    Raises :class:`OSError` (``ssl.SSLError``) when ``tls_ca`` cannot be read.
    """
    if not settings.tls:
        return None
    return ssl.create_default_context(cafile=settings.tls_ca or None)


async def open_link(settings: AMISettings) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The TCP (with ``tls``: TLS) connection to ``settings.host:settings.port``.

    Raises :class:`AMITimeout` after ``connect_timeout_s`` seconds and
    :class:`OSError` when the connection is refused or cannot be made, or
    the certificate does not verify (``ssl.SSLCertVerificationError``).
    """
    context = tls_context(settings)
    try:
        async with asyncio.timeout(settings.connect_timeout_s):
            if context is None:
                return await asyncio.open_connection(settings.host, settings.port)
            return await asyncio.open_connection(
                settings.host, settings.port, ssl=context, server_hostname=settings.host
            )
    except TimeoutError:
        where = f"{settings.host}:{settings.port}"
        raise AMITimeout(f"connect to {where}: no answer within {settings.connect_timeout_s:g} s") from None


async def log_in(send: Send, settings: AMISettings) -> None:
    """Log in as ``settings.username`` (MD5 challenge or plain secret, per ``settings.auth``).

    Raises :class:`AuthenticationError` when Asterisk refuses (or gives no
    challenge); whatever ``send`` raises otherwise (:class:`AMITimeout` when
    Asterisk does not answer in time).
    """
    fields: Fields = [("Username", settings.username)]
    if settings.auth == "md5":
        challenge = await send("Challenge", [("AuthType", "MD5")])
        if not challenge.ok or not challenge.get("Challenge"):
            raise AuthenticationError(challenge.message or "no MD5 challenge")
        key = hashlib.md5((challenge["Challenge"] + settings.secret).encode(), usedforsecurity=False).hexdigest()
        fields += [("AuthType", "MD5"), ("Key", key)]
    else:
        fields.append(("Secret", settings.secret))
    response = await send("Login", fields)
    if not response.ok:
        raise AuthenticationError(response.message or "login refused")


async def wait_booted(booted: asyncio.Event, reader: asyncio.Task[None], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` seconds for ``booted`` (set on the ``FullyBooted`` event) after the login.

    Raises why the link died if the ``reader`` task ended first (or
    :class:`ConnectionError`). Without the event in time it only logs and
    returns: ``FullyBooted`` needs ``read=system``, and without it nothing
    tells whether Asterisk is still booting.
    """
    waiter = asyncio.create_task(booted.wait())
    try:
        await asyncio.wait((waiter, reader), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if reader.done():
        reader.result()  # the link died while booting: raise why
        raise ConnectionError("AMI closed the connection while booting")
    if not booted.is_set():
        log.warning("AMI: no FullyBooted event within %.0f s (does the AMI user have read=system?)", timeout_s)
