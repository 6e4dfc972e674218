"""Routing benchmark: what salara adds to a FastAGI routing decision over the CRM's own answer time.

Run from the repository root (the test PBX running)::

    python -m bench.routing --calls 2000

This process plays both sides of salara's routing:

- **Asterisk's FastAGI side**: for each call it connects to salara's FastAGI
  port, sends the variable block Asterisk sends (``agi_network_script:
  route``, ``agi_callerid: <number>``) and answers every command
  (``SET VARIABLE``, ``EXEC Goto``) with ``200 result=1`` at once, until
  salara closes the connection. salara routes only requests that are a live
  channel as AMI reports it (uniqueid, name and caller number), so each call
  poses as one of a few real channels placed on the test Asterisk first
  (``Local/9999@sim`` waiting, one caller number each) and hung up at the end;
- **the CRM**: a lean asyncio HTTP/1.1 server answering every lookup at once
  with ``{"personal_manager_internal_phone": "9001"}`` and recording, per
  request, its own handling time (first byte of the request read to the
  answer written).

Calls run one after the other (no queueing), taking the real channels in turn. A call's time runs from connect
to close; salara's *added* time is that minus the CRM's handling time of the
same call's lookup. salara's extension-state checks (AMI ``ExtensionState``
for each candidate: 9001 from the CRM and the default 710) run on the real
Asterisk and are part of the added time. The CRM's destination 9001 is Idle
unless something else changed ``Custom:9001``; the decision's source is
counted (``crm`` when 9001 was good), the timing does not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench.api import SalaraServer, percentile, profiled
from testpbx import pbx

KEY_WORD = "personal_manager_internal_phone"
FIRST_CALLER = 5_560_000
CHANNELS = 20
"""Real channels the FastAGI calls pose as."""


@dataclass
class FastCrm:
    """An asyncio CRM: ``GET /lookup?phone=N`` (or ``POST /lookup {"phone": N}``) answers ``destination``.

    ``handled`` maps each caller number to the seconds spent handling its last lookup.
    Any other path answers ``{"result": 0}`` (event POSTs).
    """

    destination: str = "9001"
    handled: dict[str, float] = field(default_factory=dict)
    port: int = 0

    async def start(self) -> asyncio.Server:
        """Listen on a free 127.0.0.1 port (then in :attr:`port`)."""
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clock = time.perf_counter
        try:
            while True:
                first = await reader.readline()
                if not first:
                    return
                started = clock()
                head = first + await reader.readuntil(b"\r\n\r\n")
                method, target, _ = first.decode().split(" ", 2)
                lower = head.lower()
                at = lower.find(b"content-length:")
                length = int(lower[at + 15 : lower.index(b"\r\n", at)]) if at >= 0 else 0
                body = await reader.readexactly(length) if length else b""
                if target.startswith("/lookup"):
                    phone = target.partition("phone=")[2] if method == "GET" else str(json.loads(body).get("phone", ""))
                    payload = json.dumps({KEY_WORD: self.destination}).encode()
                else:
                    phone, payload = "", b'{"result":0}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                if phone:
                    self.handled[phone] = clock() - started
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass(frozen=True)
class LiveChannel:
    uniqueid: str
    name: str
    caller: str


@contextmanager
def live_channels(count: int) -> Iterator[list[LiveChannel]]:
    """``count`` real channels on the test Asterisk (``Local/9999@sim;1`` in ``Wait``), hung up on exit."""
    prefix = f"bench-route-{secrets.token_hex(4)}"
    callers = {f"{prefix}-{index}": str(FIRST_CALLER + index) for index in range(count)}
    try:
        for uniqueid, caller in callers.items():
            reply = pbx.ami_command(
                "Action: Originate",
                "Channel: Local/9999@sim",
                f'CallerID: "Customer" <{caller}>',
                "Application: Wait",
                "Data: 600",
                "Async: true",
                f"ChannelId: {uniqueid}",
            )
            if "Success" not in reply:
                raise RuntimeError(f"Originate refused: {reply}")
        deadline = time.monotonic() + 10
        while True:
            found = {}
            for line in pbx.cli("core show channels concise").splitlines():
                fields = line.split("!")
                if fields[-1] in callers:
                    found[fields[-1]] = LiveChannel(fields[-1], fields[0], callers[fields[-1]])
            if len(found) == count:
                yield list(found.values())
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(found)} of {count} channels came up")
            time.sleep(0.1)
    finally:
        for line in pbx.cli("core show channels concise").splitlines():
            fields = line.split("!")
            if fields[-1].startswith(prefix):
                pbx.cli(f"channel request hangup {fields[0]}")


def variable_block(caller: str, uniqueid: str, channel: str, script: str = "route") -> bytes:
    """The variable block Asterisk sends on a FastAGI connect (as in ``tests/transcripts/fastagi.txt``)."""
    lines = {
        "network": "yes",
        "network_script": script,
        "request": f"agi://127.0.0.1/{script}",
        "channel": channel,
        "language": "en",
        "type": "Local",
        "uniqueid": uniqueid,
        "version": "22.0.0",
        "callerid": caller,
        "calleridname": "Customer",
        "callingpres": "0",
        "callingani2": "0",
        "callington": "0",
        "callingtns": "0",
        "dnid": "unknown",
        "rdnis": "unknown",
        "context": "phones",
        "extension": "5100",
        "priority": "1",
        "enhanced": "0.0",
        "accountcode": "",
        "threadid": "140503216150208",
    }
    return "".join(f"agi_{k}: {v}\n" for k, v in lines.items()).encode() + b"\n"


async def fake_call(port: int, channel: LiveChannel) -> tuple[float, list[str]]:
    """One routed call as Asterisk makes it; returns (seconds connect to close, commands received)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(variable_block(channel.caller, channel.uniqueid, channel.name))
    commands = []
    while line := await reader.readline():
        command = line.decode().rstrip("\n")
        commands.append(command)
        if command.startswith("GET FULL VARIABLE"):
            writer.write(b"200 result=1 (%s)\n" % channel.uniqueid.encode())
        else:
            writer.write(b"200 result=1\n")
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed, commands


@dataclass(frozen=True)
class RoutingResult:
    """Figures of one routing benchmark run (seconds)."""

    calls: int
    total_p50_s: float
    crm_p50_s: float
    added_p50_s: float
    added_p99_s: float
    sources: dict[str, int]


def _source(commands: list[str]) -> str:
    for command in commands:
        if command.startswith("SET VARIABLE SALARA_ROUTE_SOURCE "):
            return command.rpartition(" ")[2]
    return "?"


async def _measure(calls: int, warmup: int, profile: str | None) -> RoutingResult:
    crm = FastCrm()
    server = await crm.start()

    def edit(text: str) -> str:
        url = f"http://127.0.0.1:{crm.port}"
        lines = []
        for line in text.splitlines():
            if line.startswith("dest_url="):
                line = f"dest_url={url}/lookup?phone="
            elif line.startswith("dest_url_event="):
                line = f"dest_url_event={url}/events"
            elif line.startswith("good_status="):
                line = "good_status=0"
            elif line.startswith("default_context="):
                line = "default_context=phones"
            lines.append(line)
        return "\n".join(lines) + "\n"

    salara = SalaraServer(edit)
    with live_channels(CHANNELS) as channels:
        await asyncio.to_thread(salara.start)
        try:
            return await _calls(salara, crm, channels, calls, warmup, profile)
        finally:
            await asyncio.to_thread(salara.stop)
            server.close()


async def _calls(
    salara: SalaraServer, crm: FastCrm, channels: list[LiveChannel], calls: int, warmup: int, profile: str | None
) -> RoutingResult:
    totals: list[float] = []
    crm_times: list[float] = []
    added: list[float] = []
    sources: Counter[str] = Counter()
    for index in range(warmup):
        await fake_call(salara.agi_port, channels[index % len(channels)])
    with profiled(salara.pid, profile):
        for index in range(warmup, warmup + calls):
            channel = channels[index % len(channels)]
            crm.handled.pop(channel.caller, None)
            elapsed, commands = await fake_call(salara.agi_port, channel)
            crm_s = crm.handled.get(channel.caller)
            if crm_s is None:
                raise RuntimeError(
                    f"salara did not ask the CRM about {channel.caller} (was {channel.name} hung up meanwhile, "
                    f"by a test hanging up every channel?): {commands}\n{salara.log()}"
                )
            totals.append(elapsed)
            crm_times.append(crm_s)
            added.append(elapsed - crm_s)
            sources[_source(commands)] += 1
    totals.sort()
    crm_times.sort()
    added.sort()
    return RoutingResult(
        len(added),
        percentile(totals, 0.5),
        percentile(crm_times, 0.5),
        percentile(added, 0.5),
        percentile(added, 0.99),
        dict(sources),
    )


def run(calls: int = 2000, warmup: int = 20, profile: str | None = None) -> RoutingResult:
    """Route ``calls`` calls one after the other (after ``warmup`` unmeasured ones).

    ``profile``: write a py-spy profile of salara during the measured calls (``.svg`` or ``.txt``).
    """
    return asyncio.run(_measure(calls, warmup, profile))


def report(result: RoutingResult) -> None:
    """Print the figures."""
    print(
        f"{result.calls:,} routed calls: connect-to-close p50 {result.total_p50_s * 1e3:.3f} ms, "
        f"CRM's own handling p50 {result.crm_p50_s * 1e3:.3f} ms"
    )
    print(f"salara's added time: p50 {result.added_p50_s * 1e3:.3f} ms, p99 {result.added_p99_s * 1e3:.3f} ms")
    print("decisions by source: " + ", ".join(f"{k} {v}" for k, v in sorted(result.sources.items())))


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bench.routing [--calls N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="measured calls (default 2000)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured calls first (default 20)")
    parser.add_argument("--profile", metavar="SVG", help="py-spy flame graph (.svg) or collapsed stacks (.txt)")
    args = parser.parse_args(argv)
    report(run(args.calls, args.warmup, args.profile))


if __name__ == "__main__":
    main()
