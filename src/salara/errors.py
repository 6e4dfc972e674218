"""salara's error hierarchy: every error salara raises on purpose is a :class:`SalaraError`.

::

    SalaraError
    ├── ConfigError                 the configuration is invalid
    ├── ProtocolError               an AMI or AGI exchange broke the protocol
    │   ├── LocalProtocolError      ours: refused before a byte was sent
    │   └── RemoteProtocolError     theirs: the peer sent what we cannot accept
    ├── AMIError                    an AMI action could not be carried out
    │   ├── AMIUnavailable          not logged in, or the link dropped mid-action
    │   ├── AMITimeout              no answer (or no login) in time
    │   ├── AMIActionError          ``Response: Error``
    │   ├── AMIListOverflow         a list answer over salara's caps (also a RemoteProtocolError)
    │   └── AuthenticationError     the login was refused
    ├── AGIError                    an AGI command could not be carried out
    │   ├── AGICommandError         a 4xx/5xx reply
    │   └── AGIHangup               the FastAGI session is over
    └── RequestError                a request cannot be carried out; ``error`` is a stable id
        ├── NotFound                "not_found" (HTTP 404 at the edge)
        ├── Unprocessable           "unprocessable" (HTTP 422)
        └── Conflict                "conflict" (HTTP 409)

Protocol errors are split the way h11 splits them: :class:`LocalProtocolError`
means salara was asked to do something the protocol forbids (our misuse, e.g.
a header value with CR LF); :class:`RemoteProtocolError` means the peer sent
something we cannot accept (theirs, e.g. an oversized message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SalaraError(Exception):
    """Base of every error salara raises on purpose."""


class ConfigError(SalaraError):
    """The configuration is invalid. The message names the section and key."""

    def __init__(self, section: str, key: str | None, reason: str) -> None:
        where = f"[{section}] {key}" if key else f"[{section}]"
        super().__init__(f"{where}: {reason}")
        self.section = section
        self.key = key
        self.reason = reason


# -- protocol ------------------------------------------------------------------


class ProtocolError(SalaraError):
    """An AMI or AGI exchange broke the protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol forbids; nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept."""


# -- AMI -----------------------------------------------------------------------


class AMIError(SalaraError):
    """An AMI action could not be carried out."""


class AMIUnavailable(AMIError):
    """AMI is not connected and logged in (or the connection dropped mid-action).

    An action that fails with this error may or may not have reached Asterisk;
    salara never replays it (a replayed Originate places a second call).
    """


class AMITimeout(AMIError):
    """Asterisk did not answer in time: an action, the login, the connect, an ``OriginateResponse``.

    The action may still have reached Asterisk and may still be carried out;
    salara never replays it.
    """


class AMIActionError(AMIError):
    """Asterisk answered an action with ``Response: Error``.

    ``message`` is Asterisk's own ``Message:`` header.
    """

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message


class AMIListOverflow(AMIError, RemoteProtocolError):
    """Asterisk's answer to a list action went over salara's item or byte cap.

    The items were dropped and the rest of the list is discarded as it
    arrives; the connection itself goes on. ``action_id`` is the list's
    ActionID, ``reason`` the cap it went over.
    """

    def __init__(self, action_id: str, reason: str) -> None:
        super().__init__(f"list answer to {action_id}: {reason}; its items were dropped")
        self.action_id = action_id
        self.reason = reason


class AuthenticationError(AMIError):
    """AMI refused the login (wrong username or secret)."""


# -- AGI -----------------------------------------------------------------------


class AGIError(SalaraError):
    """An AGI command could not be carried out."""


class AGICommandError(AGIError):
    """Asterisk answered a command with an error code (4xx/5xx).

    ``code`` is the status (510 unknown command, 511 not permitted on a dead
    channel, 520 bad syntax, 503 out of memory), ``text`` the rest of its line,
    ``usage`` the lines of a multi-line 520 reply (the closing
    ``520 End of proper usage.`` left out) and ``command`` the command words
    it answers (e.g. ``"GET VARIABLE"``).
    """

    def __init__(self, code: int, text: str, usage: tuple[str, ...] = (), command: str = "") -> None:
        super().__init__(f"{command}: {code} {text}" if command else f"{code} {text}")
        self.code = code
        self.text = text
        self.usage = usage
        self.command = command

    @property
    def dead_channel(self) -> bool:
        """True for 511: the channel is gone (or in an intercept routine)."""
        return self.code == 511


class AGIHangup(AGIError):
    """The FastAGI session is over; no further command can be sent.

    Asterisk closed the connection (the call hung up or the AGI was ended), or
    salara closed it after a command timed out or the exchange broke.
    """


# -- requests ------------------------------------------------------------------


class RequestError(SalaraError):
    """A request that cannot be carried out, whatever the API it came through.

    ``error`` is a stable, machine-readable id (the class's, unless the
    constructor gives one); ``message`` says what went wrong in words;
    ``details`` is a JSON-ready dict with more (which field, which state).
    The HTTP layer maps each class to a status code at the edge; nothing
    below it knows about HTTP.
    """

    error: str = "error"

    def __init__(self, message: str, *, error: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error is not None:
            self.error = error
        self.details: dict[str, Any] = dict(details or {})


class NotFound(RequestError):
    """No such call, extension, endpoint or channel (HTTP 404)."""

    error = "not_found"


class Unprocessable(RequestError):
    """Well-formed, but it cannot be acted on, e.g. no such extension in the context (HTTP 422)."""

    error = "unprocessable"


class Conflict(RequestError):
    """The request clashes with the state of things (HTTP 409): operator busy, call ended..."""

    error = "conflict"
