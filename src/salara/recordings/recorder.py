"""Starting Asterisk's ``MixMonitor`` on the calls salara places that are to be recorded.

A call placed with ``record`` (``POST /v1/calls``, default ``[recordings]
record_calls``) carries the file name in :attr:`Call.recording
<salara.calls.call.Call.recording>` from the moment it is announced. When
the operator's channel appears (its ``Newchannel``, Uniqueid = the call's
id) salara sends AMI ``MixMonitor`` (``Channel``, ``File`` relative to
Asterisk's monitor directory, ``Options: b``: only while bridged). Routed
calls are recorded by the routing script (``EXEC MixMonitor``) instead.
"""

from __future__ import annotations

import asyncio
import logging

from salara.ami.messages import Event
from salara.calls.registry import CallRegistry
from salara.errors import SalaraError
from salara.logsafe import escape
from salara.pbx import PBX

log = logging.getLogger(__name__)


class Recorder:
    """An AMI event listener (:meth:`on_event`) starting the recordings of placed calls; one ``MixMonitor`` each."""

    def __init__(self, pbx: PBX, registry: CallRegistry) -> None:
        self.pbx = pbx
        self.registry = registry
        self.started = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, event: Event) -> None:
        if event.name != "Newchannel":
            return
        uniqueid = event.get("Uniqueid") or ""
        call = self.registry.calls.get(uniqueid)
        if call is None or call.origin is None or call.recording is None or call.channels.get(uniqueid) is None:
            return
        channel = event.get("Channel") or ""
        task = asyncio.get_running_loop().create_task(self._start(call.id, channel, call.recording))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, call_id: str, channel: str, file: str) -> None:
        """AMI ``MixMonitor`` (app_mixmonitor): ``Channel``, ``File``, ``Options: b``."""
        try:
            await self.pbx.action("MixMonitor", {"Channel": channel, "File": file, "Options": "b"})
        except SalaraError as exc:
            self.failed += 1
            log.warning("call %s not recorded: MixMonitor on %s: %s", call_id, escape(channel), exc)
            return
        self.started += 1
        log.info("call %s: recording %s into %s", call_id, escape(channel), file)
