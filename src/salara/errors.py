"""salara's error hierarchy.

Protocol errors are split the way h11 splits them: :class:`LocalProtocolError`
means salara was asked to do something the protocol forbids (our misuse, e.g.
a header value with CR LF); :class:`RemoteProtocolError` means the peer sent
something we cannot accept (theirs, e.g. an oversized message).
"""

from __future__ import annotations


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


class ProtocolError(SalaraError):
    """An AMI or AGI exchange broke the protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol forbids; nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept."""


class AMIError(SalaraError):
    """An AMI action could not be carried out."""


class AMIUnavailable(AMIError):
    """AMI is not connected and logged in (or the connection dropped mid-action).

    An action that fails with this error may or may not have reached Asterisk;
    salara never replays it (a replayed Originate places a second call).
    """


class AMIActionError(AMIError):
    """Asterisk answered an action with ``Response: Error``.

    ``message`` is Asterisk's own ``Message:`` header.
    """

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message


class AuthenticationError(AMIError):
    """AMI refused the login (wrong username or secret)."""
