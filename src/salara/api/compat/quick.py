"""Compat answers made inside salara's HTTP protocol: a request whose answer is known at once gets no ASGI task.

Old CRMs poll extension states, many with a new connection per request, and
salara knows most of those states without asking Asterisk (the hints it
follows). For such a request, the request's cycle, its task, the
coroutines of the app and the two ASGI sends cost more than the answer.
:class:`QuickAnswers` is the :data:`~salara.api.security.transport.QuickAnswer`
the protocol asks, once a request's body has all arrived, before it starts
the request's task: it does what
:class:`~salara.api.compat.endpoint.CompatEndpoint` does, with the same
functions and the same bytes, up to the answer, and says None (the task
runs, as for any request) where that would mean waiting, or where the
request is not the compat endpoint's alone:

- a path or method the compat endpoint does not own (:class:`~salara.api.compat.dispatch.CompatPaths`);
- ``X-Forwarded-For`` or ``X-Forwarded-Proto``, which uvicorn's proxy-headers middleware reads first;
- an answer that needs Asterisk (a call, a message, a state not followed), or its PBX not connected.

None leaves nothing done twice: the security gate's admission only reads,
and a request's rights (which count calls against a rate) are checked only
once its answer is known (:func:`~salara.api.compat.endpoint.serve_now`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from salara.api.compat.endpoint import COMPAT_ROUTE, Answer, CompatEndpoint, serve_now
from salara.api.security.middleware import header_fields


class QuickAnswers:
    """The answers of ``endpoint`` known at once, to the requests ``owns`` gives it (see the module).

    ``owns`` is :meth:`CompatPaths.owns <salara.api.compat.dispatch.CompatPaths.owns>` of the app's routes.
    """

    def __init__(self, endpoint: CompatEndpoint, owns: Callable[[dict[str, Any]], bool]) -> None:
        self.endpoint = endpoint
        self.owns = owns

    def __call__(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """``(status, JSON body, extra headers)`` of the request ``scope`` with its whole ``body``, or None.

        ``scope`` is the request's ASGI scope as uvicorn made it (no middleware has run).
        """
        if not self.owns(scope):
            return None
        fields = header_fields(scope)
        if "x-forwarded-for" in fields or "x-forwarded-proto" in fields:
            return None  # read by uvicorn's proxy-headers middleware first
        started = time.perf_counter()
        result = self._answer(scope, fields, body)
        if result is None:
            return None
        endpoint = self.endpoint
        result = endpoint.finish(result)
        if endpoint.metrics is not None:
            elapsed = time.perf_counter() - started
            endpoint.metrics.observe_request(scope["method"], COMPAT_ROUTE, result.status, elapsed)
        return result.status, result.body, result.extra_headers()

    def _answer(self, scope: dict[str, Any], fields: dict[str, str], body: bytes) -> Answer | None:
        endpoint = self.endpoint
        admitted = endpoint.admit(scope, fields)
        if isinstance(admitted, Answer):
            return admitted
        too_big = endpoint.gate.body_denial(fields, len(body))
        if too_big is not None:
            return endpoint.refuse_body(scope, admitted, too_big)
        return serve_now(endpoint.call_of(scope, fields, body, admitted), endpoint.control, endpoint.security)
