"""AMI answers matched to the actions waiting for them, by ActionID.

Every action salara sends carries an ActionID; Asterisk copies it into the
``Response`` and, for ``Originate`` with ``Async: true``, into the later
``OriginateResponse`` event ("AMI Actions: Originate", docs.asterisk.org).
:class:`PendingActions` keeps one future per ActionID for each kind and
settles it when its answer arrives, when it is late, or when the link drops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from salara.ami.messages import Event, Response


class PendingActions:
    """The futures of the actions in flight: their ``Response``, and awaited ``OriginateResponse`` events."""

    __slots__ = ("_events", "_responses")

    def __init__(self) -> None:
        self._responses: dict[str, asyncio.Future[Response]] = {}
        self._events: dict[str, asyncio.Future[Event]] = {}

    def expect_response(self, action_id: str) -> asyncio.Future[Response]:
        """A new future for the ``Response`` to ``action_id``; :meth:`discard` it when done waiting."""
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._responses[action_id] = future
        return future

    def discard(self, action_id: str) -> None:
        """Stop waiting for the ``Response`` to ``action_id`` (answered, late or abandoned)."""
        self._responses.pop(action_id, None)

    def response(self, response: Response) -> bool:
        """Settle the future waiting for ``response``; False when no action waits for it."""
        action_id = response.action_id
        future = self._responses.get(action_id) if action_id is not None else None
        if future is None:
            return False
        if not future.done():
            future.set_result(response)
        return True

    def fail(self, action_id: str, exc: BaseException) -> bool:
        """Fail the action waiting for the ``Response`` to ``action_id`` with ``exc``; False if none waits."""
        future = self._responses.get(action_id)
        if future is None:
            return False
        settle(future, exc)
        return True

    def expect_event(self, action_id: str, timeout_s: float, late: BaseException) -> asyncio.Future[Event]:
        """A future for the ``OriginateResponse`` carrying ``action_id``; fails with ``late`` after ``timeout_s``.

        Cancelling the future (or its settling in any way) stops the wait.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Event] = loop.create_future()
        self._events[action_id] = future
        handle = loop.call_later(timeout_s, settle, future, late)

        def forget(_: object) -> None:
            handle.cancel()
            self._events.pop(action_id, None)

        future.add_done_callback(forget)
        return future

    def event(self, event: Event) -> None:
        """Settle the future waiting for ``event`` if it is an awaited ``OriginateResponse``."""
        if self._events and event.name == "OriginateResponse":
            action_id = event.get("ActionID")
            future = self._events.get(action_id) if action_id else None
            if future is not None and not future.done():
                future.set_result(event)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every future with ``exc`` (the link dropped: nothing more can answer)."""
        futures: list[asyncio.Future[Any]] = [*self._responses.values(), *self._events.values()]
        self._responses.clear()
        self._events.clear()
        for future in futures:
            settle(future, exc)


def settle(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``future`` with ``exc`` unless it is done; nobody need be awaiting it."""
    if not future.done():
        future.set_exception(exc)
        # Nobody may be awaiting this future any more; do not warn about it.
        future.exception()
