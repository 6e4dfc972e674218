"""``/v1``: calls as resources, states, messages and live events, described in OpenAPI.

Every route is on one :class:`~fastapi.APIRouter` built by
:func:`~salara.api.v1.router.create_router`; access control comes in
through its ``access`` (:class:`~salara.api.v1.access.Access`):
``authorize`` is called first in every route with the right the route
needs (``call``, ``message`` or ``state``) and, for calls, messages and
transfers, the context and the number dialled; ``spend`` counts a call or
message against the client's rate (for ``POST /v1/calls`` only when a new
call is placed, never for an idempotent replay); ``owner`` names the
client, whose idempotency keys and live streams are its own.

Every error answers one JSON shape, :class:`~salara.api.v1.errors.ErrorBody`:
``{"error": "<stable id>", "message": "<text>", "details": {...} | [...] | null}``.
404 no such call/extension/endpoint/channel; 409 the request clashes with
the state of things (operator not available, call ended, idempotency key
reused, transfer refused); 422 a request that does not validate (details:
one entry per problem); 503 AMI not connected (answered at once, nothing
sent) or too many live event streams; 502 Asterisk refused an action
salara expected it to take; 504 Asterisk did not answer in time.

One module per concern: :mod:`~salara.api.v1.router` (``create_router``);
one per resource: :mod:`~salara.api.v1.calls`, :mod:`~salara.api.v1.messages`,
:mod:`~salara.api.v1.states`, :mod:`~salara.api.v1.events`; their bodies,
:mod:`~salara.api.v1.models` (their strings: :mod:`~salara.api.v1.fieldtypes`);
:mod:`~salara.api.v1.errors`; the SSE response, :mod:`~salara.api.v1.stream`;
:mod:`~salara.api.v1.access`; what the routes share, :mod:`~salara.api.v1.context`.
The three names the app uses are re-exported here.
"""

from salara.api.v1.errors import ErrorBody, install_error_handlers
from salara.api.v1.router import create_router

__all__ = ["ErrorBody", "create_router", "install_error_handlers"]
