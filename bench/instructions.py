"""Instructions per compat request, counted by callgrind: salara beside the bare ASGI app.

Run from the repository root (the test PBX running; valgrind installed)::

    python -m bench.instructions --requests 300

Each server runs under ``valgrind --tool=callgrind`` with instrumentation
off until it is ready and warmed up (50 requests); then ``callgrind_control
-i on``, ``--requests`` sequential requests (``POST / {"exten":"9001"}``, a
new connection each, or one keep-alive connection with ``--keep-alive``),
``-i off`` and a dump. Instruction counts are the user-space instructions
of the server process only (the kernel's socket work and Asterisk's are not
in them), and they barely move from run to run: a way to compare two
versions on a shared, noisy machine, where rates do not. salara answers
as in service: from the hint state it follows (:mod:`salara.pbx.hints`),
with a real AMI ``ExtensionState`` round trip when the hint is read again.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.api import SalaraServer
from bench.connections import BODY, BareServer, read_answer

WARM_UP = 50


def _request(close: bool, body: bytes = BODY) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return head + connection + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def requests(port: int, count: int, *, keep_alive: bool, body: bytes = BODY, status: bytes = b"200") -> int:
    """Send ``count`` requests (``body``) one after the other; how many were answered ``status``."""
    request = _request(not keep_alive, body)
    ok = 0
    if keep_alive:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for _ in range(count):
                sock.sendall(request)
                ok += read_answer(sock, status)
        return ok
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request)
            ok += read_answer(sock, status)
    return ok


@dataclass(frozen=True)
class Count:
    """Instructions a server executed for ``requests`` requests (all answered 200)."""

    instructions: int
    requests: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


def _callgrind(out: Path) -> list[str]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    return [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def _count(pid: int, port: int, count: int, keep_alive: bool, out: Path, body: bytes, status: bytes) -> Count:
    requests(port, WARM_UP, keep_alive=keep_alive, body=body, status=status)
    control = shutil.which("callgrind_control") or "callgrind_control"
    subprocess.run([control, "-i", "on", str(pid)], check=True, capture_output=True)
    ok = requests(port, count, keep_alive=keep_alive, body=body, status=status)
    subprocess.run([control, "-i", "off", str(pid)], check=True, capture_output=True)
    subprocess.run([control, "-d", str(pid)], check=True, capture_output=True)
    if ok != count:
        raise RuntimeError(f"{count - ok} of {count} requests were not answered {status.decode()}")
    deadline = time.monotonic() + 30
    while (total := _dumped(out)) is None and time.monotonic() < deadline:
        time.sleep(0.2)  # callgrind writes the dump in its own time
    if total is None:
        raise RuntimeError(f"callgrind wrote no dump to {out}.*")
    return Count(total, count)


def _dumped(out: Path) -> int | None:
    """The instructions in callgrind's dump of the counted requests (``<out>.1``), once it is written."""
    dump = out.with_name(out.name + ".1")
    if not dump.exists():
        return None
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return None


def run(
    count: int = 300, *, keep_alive: bool = False, body: bytes = BODY, status: bytes = b"200"
) -> tuple[Count, Count]:
    """(salara, bare app) instruction counts for ``count`` sequential requests each.

    ``body`` and the ``status`` salara answers it with: ``{"exten":"9001"}``
    and 200 by default; ``{"nothing":"1"}`` and 400 measures salara without
    the AMI round trip (the bare app answers 200 to anything).
    """
    with tempfile.TemporaryDirectory(prefix="salara-callgrind-") as tmp:
        ours_out, bare_out = Path(tmp) / "salara.out", Path(tmp) / "bare.out"
        salara = SalaraServer(prefix=_callgrind(ours_out))
        salara.start(timeout_s=180)
        try:
            ours = _count(salara.pid, salara.api_port, count, keep_alive, ours_out, body, status)
        finally:
            salara.stop()
        with BareServer(prefix=_callgrind(bare_out), timeout_s=180) as bare:
            theirs = _count(bare.pid, bare.port, count, keep_alive, bare_out, body, b"200")
    return ours, theirs


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.instructions [--requests N] [--keep-alive] [--body JSON --status N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests counted (default 300)")
    parser.add_argument("--keep-alive", action="store_true", help="one keep-alive connection, not one per request")
    parser.add_argument("--body", default=BODY.decode(), help=f"request body (default {BODY.decode()})")
    parser.add_argument("--status", default="200", help="the status salara answers it with (default 200)")
    args = parser.parse_args(argv)
    body, status = args.body.encode(), args.status.encode()
    ours, theirs = run(args.requests, keep_alive=args.keep_alive, body=body, status=status)
    how = "keep-alive" if args.keep_alive else "a new connection per request"
    print(f"salara: {ours.per_request:,.0f} instructions per request ({how})")
    print(f"bare ASGI app: {theirs.per_request:,.0f} instructions per request")
    print(f"ratio bare / salara: {theirs.per_request / ours.per_request:.2f}")


if __name__ == "__main__":
    main()
