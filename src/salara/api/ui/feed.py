"""The console's live calls: a feed of the call model of its own, as Server-Sent Events.

:class:`CallFeed` is told of every AMI event (the wiring registers
:meth:`CallFeed.on_event` after the call model's own listener, so the
registry has folded the event by then) and wakes the open streams. Each
stream (:func:`live_calls`) then sends the active calls its viewer sees
(:meth:`CallControl.calls <salara.control.CallControl.calls>`), when they
differ from what it sent last. Unlike ``GET /v1/events`` this does not
depend on ``[event]``: untracked calls show too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Final

from salara.ami.messages import Event
from salara.api.v1.models import call_view
from salara.calls.registry import HANDLED_EVENTS
from salara.calls.visibility import Viewer
from salara.control import CallControl

WATCHED: Final = HANDLED_EVENTS | {"OriginateResponse", "CoreShowChannelsComplete", "FullyBooted"}
"""AMI events after which the active calls may differ."""
REFRESH_S: Final = 5.0
"""A stream looks again at least this often: changes made outside an event (a resync, an ended originate)."""
COALESCE_S: Final = 0.1
"""After a wake-up a stream waits this long, so a burst of events makes one message."""
HEARTBEAT_S: Final = 15.0
MAX_STREAMS: Final = 32
"""Live streams open at once (consoles open in browsers); one more is refused (503)."""


class CallFeed:
    """Wakes the console's live streams when the call model may have changed."""

    def __init__(self) -> None:
        self.version = 0
        self.streams = 0
        """Live streams open now (:func:`live_calls`)."""
        self._waiter: asyncio.Future[None] | None = None

    def on_event(self, event: Event) -> None:
        """An AMI event listener (quick, never raises)."""
        if event.name in WATCHED:
            self.changed()

    def changed(self) -> None:
        """Wake every stream waiting in :meth:`wait`."""
        self.version += 1
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, version: int, timeout_s: float) -> None:
        """Return once :attr:`version` differs from ``version``, or after ``timeout_s`` seconds."""
        if self.version != version:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._waiter)
        except TimeoutError:
            pass


def snapshot(control: CallControl, viewer: Viewer) -> str:
    """The active calls ``viewer`` sees, as the JSON of one message: ``{"calls": [CallView...], "ami": bool}``."""
    calls = [call_view(call).model_dump(mode="json", by_alias=True) for call in control.calls(viewer)]
    return json.dumps({"calls": calls, "ami": control.pbx.ready}, separators=(",", ":"))


async def live_calls(control: CallControl, feed: CallFeed, viewer: Viewer) -> AsyncIterator[str]:
    """Server-Sent Events: ``event: calls`` with :func:`snapshot` at once and on every change; heartbeats between."""
    sent: str | None = None
    quiet_s = 0.0
    feed.streams += 1
    try:
        while True:
            version = feed.version
            data = snapshot(control, viewer)
            if data != sent:
                sent = data
                quiet_s = 0.0
                yield f"event: calls\ndata: {data}\n\n"
            elif quiet_s >= HEARTBEAT_S:
                quiet_s = 0.0
                yield ": heartbeat\n\n"
            loop = asyncio.get_running_loop()
            started = loop.time()
            await feed.wait(version, REFRESH_S)
            await asyncio.sleep(COALESCE_S)
            quiet_s += loop.time() - started
    finally:
        feed.streams -= 1
