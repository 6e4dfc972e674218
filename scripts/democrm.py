"""A stand-in CRM for the demo, on 127.0.0.1:3000 (the example config's URLs).

Answers salara's routing lookups (every caller's manager is 9003) and prints
every call event salara posts, one JSON line each.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Crm(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # routing lookup: ...?phone=<caller>
        print(f"CRM lookup  {self.path}", flush=True)
        self._answer({"personal_manager_internal_phone": "9003"})

    def do_POST(self) -> None:  # a call event
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        print(f"CRM event   {body.decode()}  (webhook-id {self.headers.get('webhook-id')})", flush=True)
        self._answer({"result": 0})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    ThreadingHTTPServer(("127.0.0.1", port), Crm).serve_forever()
