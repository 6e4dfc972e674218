"""What every ``/v1`` route works with, and the steps they share: access, AMI link, error mapping."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from salara.api.v1.access import Access, Right
from salara.api.v1.errors import ApiError, api_error_of
from salara.calls.call import Call
from salara.control import CallControl
from salara.errors import AMIError, LocalProtocolError, NotFound, RequestError
from salara.events.hub import EventHub

T = TypeVar("T")


class RouteContext:
    """The routes' ``control``, ``hub``, ``access`` and config, and the checks every route makes.

    Built once by :func:`salara.api.v1.router.create_router`; each resource
    module's ``add_routes`` closes over it.
    """

    def __init__(self, control: CallControl, hub: EventHub, access: Access) -> None:
        self.control = control
        self.hub = hub
        self.access = access
        self.config = control.config

    def authorize(
        self, request: Request, right: Right, context: str | None, number: str | None, spend: bool = True
    ) -> None:
        """``access.authorize``, then for calls and messages (if ``spend``) ``access.spend``; raises to refuse."""
        self.access.authorize(request, right, context, number)
        if spend and right in ("call", "message"):
            self.access.spend(request, right)

    def default_context(self, context: str | None) -> str:
        """``context``, else ``[general] default_context``."""
        return context or self.config.general.default_context

    @staticmethod
    def pbx(body: str | None, query: str | None) -> str | None:
        """The PBX a request names, in its body or its ``pbx`` query parameter; 422 when they differ."""
        if body is not None and query is not None and body != query:
            raise ApiError(422, "validation_failed", f"pbx is {body!r} in the body and {query!r} in the query")
        return body if body is not None else query

    def require_ami(self, context: str | None = None, pbx: str | None = None) -> None:
        """Raise 503 ``ami_unavailable`` while the PBX's AMI is not connected (nothing is sent then).

        The PBX is ``pbx``, else the one serving ``context`` (:mod:`salara.sites`), else
        ``default``; 422 ``unknown_pbx`` for a ``pbx`` no ``[ami NAME]`` names.
        """
        try:
            site = self.control.sites.serving(context or "", pbx)
        except RequestError as exc:
            raise api_error_of(exc) from None
        if not site.pbx.ready:
            named = "" if site is self.control.sites.default else f" of PBX {site.name}"
            raise ApiError(503, "ami_unavailable", f"Asterisk (AMI){named} is not connected")

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work``; what control or the AMI client raise becomes its :class:`ApiError`."""
        try:
            return await work
        except (RequestError, AMIError, LocalProtocolError) as exc:
            raise api_error_of(exc) from None

    def lookup(self, call_id: str, request: Request) -> Call:
        """The live or recently ended call ``call_id`` the client sees; 404 ``ApiError`` if there is none."""
        try:
            return self.control.call(call_id, self.access.viewer(request))
        except NotFound as exc:
            raise api_error_of(exc) from None
