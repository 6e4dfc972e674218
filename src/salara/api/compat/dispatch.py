"""The compat endpoint served ahead of FastAPI's own stack, for speed.

Old CRMs poll states in bursts, many with a new connection per request. For
such a request FastAPI's outer layers (server errors, telemetry, the app's
body limit), matching every ``/v1`` route's pattern, solving dependencies
and the exception stack cost more than the request itself (py-spy: about
half of salara's CPU per request), and the app's own middleware (metrics,
``[general] answers = module``, security), each wrapping ``send`` or
``receive``, a third of the rest. :class:`CompatFirst` is the FastAPI app
that sends a compat request straight to
:class:`~salara.api.compat.endpoint.CompatEndpoint`, which does that
middleware's work inline with the same functions (an unexpected error is
still a 500 and logged, as Starlette's ``ServerErrorMiddleware`` does).
Every other request goes to FastAPI unchanged. The answers are the
catch-all route's, byte for byte. Once built, the same endpoint's answers
known at once (:mod:`salara.api.compat.quick`) are left in
:attr:`CompatFirst.quick_lane` for salara's protocol, which writes them
before any of this runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from salara.api.compat.endpoint import COMPAT_ROUTE, CompatEndpoint
from salara.api.compat.module import ModuleErrors
from salara.api.compat.quick import QuickAnswers
from salara.api.requestmetrics import MetricsMiddleware
from salara.api.security.middleware import SecurityMiddleware
from salara.api.security.transport import QuickLane
from salara.control import CallControl
from salara.metrics import Metrics

COMPAT_PATH = COMPAT_ROUTE
"""The catch-all route of the compat endpoint (registered last)."""


class CompatPaths:
    """Which requests are the compat endpoint's: GET or POST on a path no other route owns.

    Built from the app's routes: a path another route owns exactly, or one
    under a parametrised route's prefix (``/v1/...``: unknown ``/v1`` paths
    answer in ``/v1``'s error shape), goes to FastAPI; so do paths with CR or
    LF, whatever the method.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.route = next(r for r in routes if getattr(r, "path", None) == COMPAT_PATH)
        exact: set[str] = {"/v1"}
        prefixes: set[str] = {"/v1/"}
        for route in routes:
            path = getattr(route, "path", "")
            if route is self.route or not path:
                continue
            if "{" in path:
                prefixes.add(path.split("{", 1)[0])
            else:
                exact.add(path)
        self.exact = frozenset(exact)
        self.prefixes = tuple(sorted(prefixes))

    def owns(self, scope: Scope) -> bool:
        """Whether the compat endpoint answers ``scope`` (an HTTP request)."""
        path: str = scope.get("path", "")
        return (
            scope.get("method") in ("GET", "POST")
            and path not in self.exact
            and not path.startswith(self.prefixes)
            and "\n" not in path
            and "\r" not in path
        )


class CompatFirst(FastAPI):
    """A FastAPI app whose compat requests skip FastAPI's routing (see the module's text).

    :meth:`serve_compat` must be called once the app's security is
    installed (``app.state.security``); the compat stack is built at the
    first request, when every route and middleware is known.
    """

    _control: CallControl | None = None
    _compat: ASGIApp | None = None
    _paths: CompatPaths | None = None
    quick_lane: QuickLane | None = None
    """Where the compat answers known at once are left for salara's protocol (:mod:`salara.api.compat.quick`)."""

    def serve_compat(self, control: CallControl) -> None:
        """Serve the compat endpoint with ``control`` ahead of FastAPI (and in the protocol: :attr:`quick_lane`)."""
        self._control = control
        self.quick_lane = QuickLane()

    def _build_compat(self) -> tuple[ASGIApp, CompatPaths]:
        assert self._control is not None
        gate: SecurityMiddleware | None = None
        metrics: Metrics | None = None
        module_errors = False
        for entry in self.user_middleware:
            kwargs: dict[str, Any] = dict(entry.kwargs)
            cls: Any = entry.cls
            if cls is SecurityMiddleware:
                gate = SecurityMiddleware(self._no_app, kwargs["security"], kwargs.get("browser"))
            elif cls is MetricsMiddleware:
                metrics = kwargs["metrics"]
            elif cls is ModuleErrors:
                module_errors = True
            else:  # its work would be skipped on the compat path: refuse to start rather than serve without it
                raise TypeError(f"the compat endpoint does not run middleware {cls!r}")
        if gate is None:
            raise TypeError("the compat endpoint needs the security middleware installed first")
        if self.exception_handlers.get(500) or self.exception_handlers.get(Exception) or self.debug:
            raise TypeError("the compat endpoint answers unexpected errors with a plain 500 only")
        compat = CompatEndpoint(self._control, self.state.security, gate, metrics, module_errors=module_errors)
        self._compat, self._paths = compat, CompatPaths(self.routes)
        if self.quick_lane is not None:
            self.quick_lane.answer = QuickAnswers(compat, self._paths.owns)
        return self._compat, self._paths

    @staticmethod
    async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:  # the gate's phases only are used
        raise RuntimeError("the compat endpoint's security gate has no app behind it")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._control is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self._compat is None or self._paths is None:
            compat, paths = self._build_compat()
        else:
            compat, paths = self._compat, self._paths
        if not paths.owns(scope):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        scope["route"] = paths.route  # as the router would set it (metrics label the route)
        await compat(scope, receive, send)
