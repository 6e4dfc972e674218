"""A recording CRM for the delivery tests: a real HTTP server on 127.0.0.1 (port 0), and helpers.

:class:`RecordingCRM` is a minimal HTTP/1.1 server (keep-alive, Content-Length
bodies) written here on ``asyncio.start_server``: it records every request as
it arrives and answers what its ``policy`` says (a status, after waiting on
whatever the policy awaits). ``stop()`` closes the port and every connection,
so the worker sees connection refused until ``start()`` opens it again.
Waits are bounded waits on conditions, never timing thresholds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from salara.crm.delivery import DeliveryWorker
from salara.store.sqlite import Outbox

WAIT_S = 10.0
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the CRM got it: header names in lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def name(self) -> str:
        return str(json.loads(self.body)["event"])


Policy = Callable[[Request], Awaitable[int]]


async def answer_200(request: Request) -> int:
    return 200


class RecordingCRM:
    """A CRM on 127.0.0.1 that records requests and answers per ``policy``.

    ``tls`` makes it HTTPS; ``reply_headers`` (CRLF-terminated lines) go into every answer.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.reply_headers = b""
        self.received: list[Request] = []
        self.answered: list[tuple[Request, int]] = []
        self.policy: Policy = answer_200
        self.active = 0
        self.max_active = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/events"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the port and every open connection: clients now get connection refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.drop_connections()

    async def drop_connections(self) -> None:
        """Close every open connection (requests waiting for an answer get none)."""
        for task in self._handlers:
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers)

    def delivered(self) -> list[Request]:
        return [request for request, status in self.answered if 200 <= status < 300]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                request = await self._read(reader)
                if request is None:
                    return
                self.received.append(request)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                try:
                    status = await self.policy(request)
                finally:
                    self.active -= 1
                reply = b'{"result":0}'
                writer.write(
                    b"HTTP/1.1 %d X\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (status, self.reply_headers, len(reply), reply)
                )
                await writer.drain()
                self.answered.append((request, status))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Request(method, path, headers, body)


@contextlib.asynccontextmanager
async def running(worker: DeliveryWorker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled() or task.exception() is None


async def until(condition: Callable[[], bool], what: str = "condition") -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def fast_worker(
    outbox: Outbox, url: str, *, concurrency: int, secret: str = "", idle_poll_s: float = 5.0
) -> DeliveryWorker:
    """A worker that retries within tens of milliseconds."""
    return DeliveryWorker(
        outbox,
        url,
        secret=secret,
        concurrency=concurrency,
        idle_poll_s=idle_poll_s,
        retry_min_s=0.02,
        retry_max_s=0.1,
        timeout_s=5.0,
    )


def add(outbox: Outbox, worker: DeliveryWorker | None, *names: str) -> dict[str, str]:
    """Add events named ``<call><n>`` (call key = the letters); return {name: id}."""
    items = [(name.rstrip("0123456789"), json.dumps({"event": name}).encode()) for name in names]
    ids = outbox.add(items)
    if worker is not None:
        worker.notify()
    return dict(zip(names, ids, strict=True))


def calls(requests: list[Request]) -> dict[str, list[str]]:
    """Event names per call, in arrival order."""
    out: dict[str, list[str]] = {}
    for request in requests:
        out.setdefault(request.name.rstrip("0123456789"), []).append(request.name)
    return out
