"""A real HTTP CRM on 127.0.0.1 for tests: answers routing lookups, records events.

- ``GET /lookup?phone=N`` and ``POST /lookup {"phone": N}`` answer
  ``{"personal_manager_internal_phone": <routes[N]>}`` (404 if unknown).
- ``POST /events`` records the body and headers, answers ``{"result": 0}``.
- ``delay_s`` delays every answer; ``status`` overrides the status code
  (optionally per event via ``status_for(body) -> int | None``).
- ``stop()`` closes the port (connection refused) and ``start()`` opens the same port again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KEY_WORD = "personal_manager_internal_phone"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered_at: float | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeCrm:
    routes: dict[str, Any] = field(default_factory=dict)
    delay_s: float = 0.0
    status: int | None = None
    status_for: Callable[[bytes], int | None] | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeCrm:
        crm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Received(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
                with crm._lock:
                    crm.received.append(record)
                if crm.delay_s:
                    time.sleep(crm.delay_s)
                status, answer = crm._answer(record)
                payload = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass
                record.answered_at = time.monotonic()

            do_GET = _handle
            do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _answer(self, record: Received) -> tuple[int, object]:
        split = urlsplit(record.path)
        if split.path.startswith("/lookup"):
            if record.method == "GET":
                phone = parse_qs(split.query).get("phone", [""])[0]
            else:
                phone = str(json.loads(record.body or b"{}").get("phone", ""))
            if self.status is not None:
                return self.status, {"error": "configured"}
            if phone not in self.routes:
                return 404, {"error": "unknown caller"}
            route = self.routes[phone]
            return 200, route if isinstance(route, dict) else {KEY_WORD: route}  # a dict: the whole answer
        status = self.status_for(record.body) if self.status_for else None
        status = status or self.status or 200
        return status, {"result": 0}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.startswith("/events")]

    def lookups(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.startswith("/lookup")]

    def wait_for(self, predicate: Callable[[FakeCrm], bool], timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"CRM condition not met within {timeout_s} s; got {len(self.received)} requests")
