"""A large, realistic AMI byte stream built from the recorded Asterisk 22 calls.

The call events of ``tests/transcripts/`` (Newchannel ... Hangup, Dial*,
Bridge*, Queue*/Agent*, AGIExec*, OriginateResponse, and the DeviceStateChange
/ ExtensionStatus / TestEvent traffic that goes with them) are grouped into
per-call *templates* by ``Linkedid``. Each template is replayed for thousands
of distinct calls with fresh ids: Uniqueid/Linkedid (and every ``*Uniqueid`` /
``*Linkedid`` header, since the values are rewritten wherever they appear),
channel-name suffixes (``PJSIP/8001-0000000c``, ``Local/710@phones-0000000c;2``),
``CallID`` tags, bridge UUIDs and OriginateResponse ActionIDs. A few calls
(``concurrency``) run at once and their events interleave in short runs, as on
a busy PBX. The stream opens like a real session: the greeting, the Login
response and FullyBooted.

Events average about 370 bytes, so 1,000,000 events are about 370 MB. The
stream is therefore produced lazily (about 1 s per million events, ~20 MB
RSS): :func:`iter_stream` yields ~1 MiB pieces and :func:`stream_chunks`
re-cuts them into socket-read-sized chunks on the fly, so a consumer's RSS
reflects the consumer, not the input. :func:`build_stream` and :func:`chunks`
materialise everything, for small streams (tests). Same ``seed``, same bytes.
"""

from __future__ import annotations

import math
import re
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from random import Random

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # so that ``tests.transcript`` imports from any cwd
    sys.path.insert(0, str(_ROOT))

from tests.transcript import received  # noqa: E402

CALL_TRANSCRIPTS = (
    "originate_local_async.txt",
    "originate_dial_pjsip.txt",
    "originate_pjsip_direct.txt",
    "originate_failures.txt",
    "queue.txt",
    "inbound_ua_to_queue.txt",
    "fastagi_ami_side.txt",
    "status_channels_hangup.txt",
)
"""Transcripts whose events are calls."""

GREETING = b"Asterisk Call Manager/11.0.0\r\n"
HEAD = (
    GREETING
    + b"Response: Success\r\nActionID: a1\r\nMessage: Authentication accepted\r\n\r\n"
    + b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 71\r\nLastReload: 71\r\n"
    + b"Status: Fully Booted\r\n\r\n"
)
"""Greeting, Login response and FullyBooted (one event), as in ``login_plain.txt``."""

DEFAULT_SIZES = (256, 65536)
"""Read sizes are log-uniform in this range: mostly a few hundred bytes to 64 KiB."""

_ID = re.compile(
    rb"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    rb"|(?P<uid>\b\d{10}\.\d+\b)"
    rb"|(?<=-)(?P<hex>[0-9a-f]{8})(?=[;\]\r])"
    rb"|(?<=\nActionID: )(?P<aid>[^\r]*)"
)
_LINKEDID = re.compile(rb"^\w*Linkedid: (\S+)", re.M)
_DROPPED_PRIVILEGES = (b"Privilege: security", b"Privilege: system")


@dataclass(frozen=True)
class Template:
    """The events of one recorded call, as ``bytes % mapping`` formats."""

    source: str
    formats: tuple[bytes, ...]
    """One format per event, closing blank line included; ``%`` escaped."""
    slots: tuple[tuple[bytes, str, bytes], ...]
    """``(key, kind, original value)``; kind is uid, hex, uuid or aid."""


def _call_events(name: str) -> list[bytes]:
    """The call events of a transcript, each a message without its blank line."""
    data = b"".join(received(name))
    if data.endswith(b"\r\n\r"):
        # Older tests/transcript.py dropped a newline after the file's last
        # block too, cutting the final CR LF CR LF short; harmless once fixed.
        data += b"\n"
    data = data[data.index(b"\r\n") + 2 :]  # the greeting line
    out = []
    for message in data.split(b"\r\n\r\n"):
        if not message.startswith(b"Event: ") or any(p in message for p in _DROPPED_PRIVILEGES):
            continue  # responses, login/security/system events
        if b"\r\nActionID: " in message and not message.startswith(b"Event: OriginateResponse\r\n"):
            continue  # list items of Status & co. answer an action, not a call
        out.append(message)
    return out


def _group(events: list[bytes]) -> list[list[bytes]]:
    """Split events into calls by Linkedid; events without one join the current call."""
    calls: dict[bytes, list[bytes]] = {}
    orphans: list[bytes] = []  # events before the first call
    current: list[bytes] | None = None
    for event in events:
        match = _LINKEDID.search(event)
        if match:
            current = calls.setdefault(match.group(1), [])
            if orphans:
                current.extend(orphans)
                orphans.clear()
        if current is None:
            orphans.append(event)
        else:
            current.append(event)
    return list(calls.values())


def _template(source: str, events: list[bytes]) -> Template:
    slots: dict[bytes, tuple[bytes, str]] = {}

    def slot(match: re.Match[bytes]) -> bytes:
        kind = match.lastgroup or ""
        value = match.group()
        if value not in slots:
            slots[value] = (b"s%d" % len(slots), kind)
        return b"%(" + slots[value][0] + b")s"

    formats = tuple(_ID.sub(slot, (event + b"\r\n\r\n").replace(b"%", b"%%")) for event in events)
    return Template(source, formats, tuple((key, kind, value) for value, (key, kind) in slots.items()))


def load_templates() -> list[Template]:
    """Every recorded call of :data:`CALL_TRANSCRIPTS` as a template."""
    templates = []
    for name in CALL_TRANSCRIPTS:
        for index, call in enumerate(_group(_call_events(name))):
            templates.append(_template(f"{name}#{index}", call))
    return templates


class _Ids:
    """Fresh ids in Asterisk's formats, unique over the whole stream."""

    def __init__(self, rng: Random) -> None:
        self._rng = rng
        self._calls = 0
        self._channel_seq = 0
        self._hex = 0

    def mapping(self, template: Template) -> dict[bytes, bytes]:
        self._calls += 1
        epoch = 1_800_000_000 + self._calls // 4
        uids = sorted((s for s in template.slots if s[1] == "uid"), key=lambda s: int(s[2].rpartition(b".")[2]))
        out = {}
        for key, _kind, _value in uids:
            out[key] = b"%d.%d" % (epoch, self._channel_seq)
            self._channel_seq += 1
        for key, kind, _value in template.slots:
            if kind == "hex":
                self._hex += 1
                out[key] = b"%08x" % (self._hex & 0xFFFFFFFF)
            elif kind == "uuid":
                out[key] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4)).encode()
            elif kind == "aid":
                out[key] = b"bench-%d" % self._calls
        return out


def iter_stream(n_events: int, seed: int = 1, *, concurrency: int = 6, piece_bytes: int = 1 << 20) -> Iterator[bytes]:
    """Yield the stream of exactly ``n_events`` events (FullyBooted included) in ~1 MiB pieces.

    The last calls are cut off wherever the count runs out.
    """
    if n_events < 1:
        raise ValueError("n_events must be at least 1 (FullyBooted)")
    rng = Random(seed)
    templates = load_templates()
    ids = _Ids(rng)

    def new_call() -> list[bytes]:
        template = rng.choice(templates)
        mapping = ids.mapping(template)
        return [f % mapping for f in template.formats]

    active = [new_call() for _ in range(concurrency)]
    positions = [0] * concurrency
    out = [HEAD]
    size = len(HEAD)
    remaining = n_events - 1
    while remaining:
        index = rng.randrange(concurrency)
        events, position = active[index], positions[index]
        end = min(position + rng.randint(1, 4), len(events), position + remaining)
        run = events[position:end]
        out += run
        size += sum(map(len, run))
        remaining -= end - position
        if end == len(events):
            active[index], positions[index] = new_call(), 0
        else:
            positions[index] = end
        if size >= piece_bytes:
            yield b"".join(out)
            out, size = [], 0
    if out:
        yield b"".join(out)


def iter_chunks(pieces: Iterable[bytes], sizes: tuple[int, int] = DEFAULT_SIZES, seed: int = 1) -> Iterator[bytes]:
    """Re-cut ``pieces`` into reads whose sizes are log-uniform in ``sizes`` (inclusive)."""
    low, high = sizes
    rng = Random(seed)
    lo_bits, hi_bits = math.log2(low), math.log2(high)

    def next_size() -> int:
        return min(high, max(low, round(2 ** rng.uniform(lo_bits, hi_bits))))

    pending = b""
    need = next_size()
    for piece in pieces:
        data = pending + piece if pending else piece
        position = 0
        while len(data) - position >= need:
            yield data[position : position + need]
            position += need
            need = next_size()
        pending = data[position:]
    if pending:
        yield pending


def stream_chunks(n_events: int, seed: int = 1, sizes: tuple[int, int] = DEFAULT_SIZES) -> Iterator[bytes]:
    """The stream of :func:`iter_stream`, generated lazily and cut into socket reads."""
    return iter_chunks(iter_stream(n_events, seed), sizes, seed)


def build_stream(n_events: int, seed: int = 1) -> bytes:
    """The whole stream at once (about 370 bytes per event: keep ``n_events`` small)."""
    return b"".join(iter_stream(n_events, seed))


def chunks(stream: bytes, sizes: tuple[int, int] = DEFAULT_SIZES, seed: int = 1) -> list[bytes]:
    """``stream`` cut into socket-read-sized chunks (deterministic for a ``seed``)."""
    return list(iter_chunks([stream], sizes, seed))
