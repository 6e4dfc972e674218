"""The asyncio AMI client: the one owner of salara's AMI socket.

It connects and logs in (MD5 challenge or plain secret:
:mod:`salara.ami.connect`), waits for ``FullyBooted``, correlates every
answer to its action by ActionID (one is always sent;
:mod:`salara.ami.pending`), hands every event to the registered listeners
(:mod:`salara.ami.listeners`), keeps the link alive with ``Ping`` and, when
Asterisk goes away (``Shutdown`` event, closed socket, failed ping),
reconnects with jittered exponential backoff (:mod:`salara.ami.reconnect`).

Actions in flight when the link drops fail with
:class:`~salara.errors.AMIUnavailable`; they are never replayed, because a
replayed ``Originate`` places a second call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from salara.ami.connect import AMISettings as AMISettings  # re-exported: built by the app and the tests
from salara.ami.connect import log_in, open_link, wait_booted
from salara.ami.listeners import ActionListener, EventListener, Listeners, StateListener
from salara.ami.messages import Action, Event, Greeting, Response
from salara.ami.pending import PendingActions
from salara.ami.protocol import AMIConnection
from salara.ami.reconnect import reconnect_forever
from salara.errors import (
    AMIActionError,
    AMIError,
    AMIListOverflow,
    AMITimeout,
    AMIUnavailable,
    RemoteProtocolError,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 << 20
"""Largest single AMI message accepted (a Command answer can be big)."""
FOLLOWS_BODY_TIMEOUT_S = 5.0
"""Longest wait for the end of an old ``Response: Follows`` body, past which the link is dropped.

Asterisk before 14 writes the whole body right after its head; while it is
held nothing behind it (events included) comes out, so a body that does not
end must not stall the stream until the action's own timeout.
"""

Fields = Mapping[str, str | int] | Iterable[tuple[str, str | int]]


@dataclass(slots=True)
class AMIStats:
    """Counters the metrics endpoint reads."""

    connects: int = 0
    disconnects: int = 0
    events: int = 0
    actions: int = 0


class AMIClient:
    """One logged-in AMI session that heals itself. Run :meth:`run` as a task."""

    def __init__(self, settings: AMISettings) -> None:
        self.settings = settings
        self.stats = AMIStats()
        self._listeners = Listeners()
        self._pending = PendingActions()
        self._writer: asyncio.StreamWriter | None = None
        self._conn: AMIConnection | None = None
        self._ready = asyncio.Event()
        self._booted = asyncio.Event()
        self._ids = itertools.count(1)
        self._session = 0
        # OriginateResponse events reach every AMI session: a per-process
        # prefix keeps another client's ActionIDs from ever matching ours.
        self._id_prefix = f"salara-{secrets.token_hex(4)}"
        self._probe: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    # -- public API ----------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True while logged in and Asterisk has fully booted."""
        return self._ready.is_set()

    def add_event_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for every event, in arrival order.

        Listeners run in the reader task: they must be quick and must not raise
        (an exception is logged and the event goes on to the next listener).
        """
        self._listeners.events.append(listener)

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(ready)`` whenever readiness changes."""
        self._listeners.states.append(listener)

    def add_action_listener(self, listener: ActionListener) -> None:
        """Call ``listener(name, seconds, outcome)`` when an action sent to Asterisk is done.

        ``seconds`` is the time from writing the action to its answer (or to
        the failure); ``outcome`` is ``success`` or ``error`` (Asterisk's
        ``Response``), ``timeout`` or ``lost`` (the link dropped). For metrics:
        it must be quick and must not raise.
        """
        self._listeners.actions.append(listener)

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until ready; raises :class:`TimeoutError`."""
        async with asyncio.timeout(timeout_s):
            await self._ready.wait()

    def next_action_id(self) -> str:
        return f"{self._id_prefix}-{self._session}-{next(self._ids)}"

    async def action(
        self,
        name: str,
        fields: Fields = (),
        *,
        timeout_s: float | None = None,
        check: bool = True,
    ) -> Response:
        """Send action ``name`` with ``fields`` and return its :class:`Response`.

        ``name`` and ``fields`` are as in Asterisk's "AMI Actions"
        documentation (docs.asterisk.org); the ActionID is added here. Waits
        ``timeout_s`` seconds (default ``action_timeout_s``). List actions
        return once ``EventList: Complete`` arrived, with the items in
        ``Response.events``. Raises :class:`AMIUnavailable` when not ready or
        when the link drops before the answer,
        :class:`~salara.errors.LocalProtocolError` for a field AMI cannot carry
        (nothing sent), :class:`AMITimeout` when no answer came in time and,
        when ``check`` is true, :class:`AMIActionError` for ``Response: Error``.
        """
        response = await self._send(Action.build(name, self.next_action_id(), fields), timeout_s)
        if check and not response.ok:
            raise AMIActionError(name, response.message)
        return response

    async def originate(self, fields: Fields, *, timeout_s: float) -> tuple[Response, asyncio.Future[Event]]:
        """Send ``Originate`` with ``Async: true``.

        Returns Asterisk's immediate answer and a future resolving to the
        ``OriginateResponse`` event that carries the same ActionID (its
        ``Response`` header is ``Success`` or ``Failure``, ``Reason`` the
        cause code). The future fails with :class:`AMIUnavailable` if the link
        drops, or :class:`AMITimeout` after ``timeout_s`` seconds. Sending
        raises as :meth:`action` does (its own timeout is ``action_timeout_s``).
        """
        action = Action.build("Originate", self.next_action_id(), [*_pairs(fields), ("Async", "true")])
        late = AMITimeout(f"Originate: no OriginateResponse within {timeout_s:g} s")
        outcome = self._pending.expect_event(action.action_id, timeout_s, late)
        try:
            response = await self._send(action, None)
        except BaseException:
            outcome.cancel()
            raise
        if not response.ok:
            outcome.cancel()
            raise AMIActionError("Originate", response.message)
        return response, outcome

    async def command(self, command: str, *, timeout_s: float | None = None) -> list[str]:
        """Run an Asterisk CLI command (AMI ``Command``); return its output lines.

        Raises :class:`AMIActionError` if Asterisk reports an error (for
        example an unknown command); the output is in its message.
        """
        response = await self.action("Command", {"Command": command}, timeout_s=timeout_s, check=False)
        if not response.ok:
            detail = "; ".join(response.output) or response.message
            raise AMIActionError("Command", detail)
        return response.output

    async def run(self) -> None:
        """Connect, serve and reconnect until cancelled (:mod:`salara.ami.reconnect`)."""
        await reconnect_forever(self._session_once, self.settings, failed=self._failed, ended=self._drop_connection)

    def _failed(self, reason: str) -> None:
        self.last_error = reason

    # -- connection lifecycle ------------------------------------------------

    async def _session_once(self) -> None:
        settings = self.settings
        self._session += 1
        reader, writer = await open_link(settings)
        self._writer = writer
        # Large enough for a big PBX's "core show channels" as one Command answer.
        self._conn = conn = AMIConnection(max_message_bytes=MAX_MESSAGE_BYTES)
        self._booted.clear()
        reader_task = asyncio.create_task(self._read_loop(reader, conn), name="ami-reader")
        pinger: asyncio.Task[None] | None = None
        try:
            await log_in(self._send_fields, settings)
            await wait_booted(self._booted, reader_task, settings.boot_timeout_s)
            self.stats.connects += 1
            self._set_ready(True)
            log.info("AMI logged in to %s:%d as %r", settings.host, settings.port, settings.username)
            pinger = asyncio.create_task(self._ping_loop(), name="ami-ping")
            await reader_task
        finally:
            helpers = [task for task in (pinger, reader_task) if task is not None]
            for task in helpers:
                task.cancel()
            # asyncio.wait does not raise the helpers' CancelledError, so a
            # cancellation of run() itself still propagates from here.
            await asyncio.wait(helpers)

    async def _send_fields(self, name: str, fields: list[tuple[str, str | int]]) -> Response:
        return await self._send(Action.build(name, self.next_action_id(), fields), None)

    async def _read_loop(self, reader: asyncio.StreamReader, conn: AMIConnection) -> None:
        loop = asyncio.get_running_loop()
        body_deadline: float | None = None
        try:
            while True:
                if not conn.awaiting_body:
                    body_deadline = None
                elif body_deadline is None:
                    body_deadline = loop.time() + FOLLOWS_BODY_TIMEOUT_S
                try:
                    if body_deadline is not None and loop.time() >= body_deadline:
                        raise TimeoutError
                    async with asyncio.timeout_at(body_deadline):
                        data = await reader.read(65536)
                except TimeoutError:
                    raise RemoteProtocolError(
                        f"a 'Response: Follows' body did not reach --END COMMAND-- in {FOLLOWS_BODY_TIMEOUT_S:g} s;"
                        " dropping the link so that the events behind it flow again"
                    ) from None
                conn.receive_data(data)
                for message in conn.drain():
                    if isinstance(message, Event):
                        self._on_event(message)
                    elif isinstance(message, Response):
                        self._on_response(message)
                    elif isinstance(message, AMIListOverflow):
                        log.warning("AMI %s", message)
                        self._pending.fail(message.action_id, message)
                    elif isinstance(message, Greeting):
                        log.debug("AMI greeting: %s", message.text)
                if not data:
                    raise ConnectionError("AMI closed the connection")
        finally:
            # Nothing more can answer: stop taking actions and fail what waits
            # now, not at its timeout.
            if self.ready:
                self._set_ready(False)
            self._pending.fail_all(AMIUnavailable("AMI connection lost; the action was not replayed"))

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval_s)
            try:
                await self._send(Action("Ping", self.next_action_id()), self.settings.action_timeout_s)
            except AMIError as exc:
                log.warning("AMI ping failed (%s); reconnecting", exc)
                self._abort()
                return

    def _abort(self) -> None:
        """Drop the link at once (a stuck peer would never drain a graceful close)."""
        if self._writer is not None:
            self._writer.transport.abort()

    def _suspect(self) -> None:
        """An action timed out: check the link now with a quick Ping, not at the next interval."""
        if self._probe is not None and not self._probe.done():
            return

        async def probe() -> None:
            try:
                await self._send(Action("Ping", self.next_action_id()), min(5.0, self.settings.action_timeout_s))
            except AMIUnavailable:
                return
            except AMIError:
                log.warning("AMI does not answer a Ping; dropping the link to reconnect")
                if self.ready:
                    self._set_ready(False)
                self._abort()

        self._probe = asyncio.create_task(probe(), name="ami-probe")

    def _drop_connection(self) -> None:
        logged_in = self._conn is not None and self._booted.is_set()
        was_ready = self.ready
        self._ready.clear()
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._conn = None
        self._pending.fail_all(AMIUnavailable("AMI connection lost; the action was not replayed"))
        if logged_in:
            self.stats.disconnects += 1
        if was_ready:
            self._listeners.state(False)

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        self._listeners.state(ready)

    # -- message dispatch ----------------------------------------------------

    async def _send(self, action: Action, timeout_s: float | None) -> Response:
        conn, writer = self._conn, self._writer
        if conn is None or writer is None or conn.closed or writer.is_closing():
            raise AMIUnavailable("AMI is not connected")
        if action.name not in ("Login", "Challenge") and not self.ready:
            raise AMIUnavailable("AMI is not logged in")
        data = conn.send(action)  # validates before anything is written
        future = self._pending.expect_response(action.action_id)
        limit_s = timeout_s or self.settings.action_timeout_s
        self.stats.actions += 1
        started = time.perf_counter()
        outcome = "lost"
        answered = False
        try:
            try:
                writer.write(data)
                await writer.drain()
            except (OSError, RuntimeError) as exc:  # the transport closed under us
                raise AMIUnavailable(f"AMI link lost while sending: {exc}") from None
            async with asyncio.timeout(limit_s):
                response = await future
            answered = True
            outcome = "success" if response.ok else "error"
            return response
        except AMIListOverflow:
            outcome = "error"
            raise
        except TimeoutError:
            outcome = "timeout"
            if action.name != "Ping":
                self._suspect()
            raise AMITimeout(f"{action.name}: no answer from Asterisk within {limit_s:g} s") from None
        finally:
            self._pending.discard(action.action_id)
            if not answered:  # late, cancelled, lost or refused: what still comes for it is dropped
                conn.forget(action.action_id)
            if self._listeners.actions:
                self._listeners.action(action.name, time.perf_counter() - started, outcome)

    def _on_response(self, response: Response) -> None:
        if not self._pending.response(response):
            log.debug("AMI response without a waiting action: %s", response.headers)

    def _on_event(self, event: Event) -> None:
        self.stats.events += 1
        name = event.name
        if name == "FullyBooted":
            self._booted.set()
        elif name == "Shutdown":
            log.warning("Asterisk is shutting down (Restart: %s)", event.get("Restart", "?"))
            if self.ready:
                self._set_ready(False)
        self._pending.event(event)
        self._listeners.event(event)


def _pairs(fields: Fields) -> list[tuple[str, str | int]]:
    return list(fields.items() if isinstance(fields, Mapping) else fields)
