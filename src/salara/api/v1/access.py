"""Access control as ``/v1`` sees it: :class:`Access`, and :class:`OpenAccess` when none is installed.

``authorize`` is called first in every route with the right the route needs
(``call``, ``message`` or ``state``) and, for calls, messages and
transfers, the context and the number dialled; ``spend`` counts a call or
message against the client's rate (for ``POST /v1/calls`` only when a new
call is placed, never for an idempotent replay); ``owner`` names the
client, whose idempotency keys and live streams are its own; ``viewer``
says which calls it sees (:mod:`salara.calls.visibility`). The app
installs :class:`salara.api.security.access.TokenAccess`.
"""

from __future__ import annotations

from typing import Literal, Protocol

from fastapi import Request

from salara.calls.visibility import EVERYONE, Viewer

Right = Literal["call", "message", "state", "recordings", "admin"]


class Access(Protocol):
    """Access control as ``/v1`` sees it; each method returns, or raises to refuse (the raiser answers)."""

    def authorize(self, request: Request, right: Right, context: str | None, number: str | None) -> None:
        """May the client do ``right`` (in ``context``, to ``number``)? Spends nothing."""

    def spend(self, request: Request, right: Right) -> None:
        """Count one call or message against the client's rate."""

    def owner(self, request: Request) -> str:
        """Who the client is (a token's name): its idempotency keys and live streams are counted as its own."""

    def viewer(self, request: Request) -> Viewer:
        """Which calls the client sees and controls: its own, those in its contexts; all with ``admin``."""


class OpenAccess:
    """The access control when none is installed: everything allowed, one owner."""

    def authorize(self, request: Request, right: Right, context: str | None, number: str | None) -> None:
        pass

    def spend(self, request: Request, right: Right) -> None:
        pass

    def owner(self, request: Request) -> str:
        return ""

    def viewer(self, request: Request) -> Viewer:
        return EVERYONE
