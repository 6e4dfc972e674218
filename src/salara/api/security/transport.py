"""How a request's answer is written in salara's protocol (:mod:`salara.api.security.connections`).

:class:`OneWriteTransport` is :class:`~salara.api.security.linger.RequestTransport`
(the lingering close after a refused body) that also sends a fixed-length
answer's head and body in one write, and refers to its cycle and protocol
weakly, so a finished request is freed at once rather than by the cyclic
collector. :func:`answer_whole` is the ASGI extension
:data:`WHOLE_ANSWER_EXTENSION` behind it: a small JSON answer known in
full, written at once without the two ASGI sends.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from salara.api.security.linger import RequestTransport

WHOLE_ANSWER_EXTENSION = "salara.whole_answer"
"""ASGI scope extension of salara's uvicorn protocol: ``{"send": callable}``, see :func:`answer_whole`."""

JSON_TYPE = b"content-type: application/json\r\n"


class OneWriteTransport(RequestTransport):
    """A request's transport that sends a fixed-length answer's head with its body, in one write.

    uvicorn writes the head and the body of an answer separately: two
    syscalls, and two segments on the wire. The head of an answer with a
    ``content-length`` (not to a HEAD) is held until the body's first write
    (or a close); any other write (100 Continue, chunked answers) goes out at once.
    """

    _head: bytes | None = None

    def __init__(self, protocol: Any, cycle: Any) -> None:
        super().__init__(protocol, cycle)
        # The cycle holds this transport: strong references back to it and to the protocol
        # (which holds the cycle) would leave every request's cycle and scope as cyclic
        # garbage, and the collector's pauses in the latency tail.
        self._cycle_of = weakref.ref(cycle)
        self._protocol_of = weakref.ref(protocol)
        self._cycle = self._protocol = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
            return
        cycle = self._cycle_of()
        if (
            cycle is not None
            and cycle.response_started
            and not cycle.response_complete
            and cycle.chunked_encoding is False
            and cycle.expected_content_length > 0
            and cycle.scope["method"] != "HEAD"  # no body follows a HEAD answer's head
        ):
            self._head = bytes(data)
            return
        self._transport.write(data)

    def close(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        protocol = self._protocol_of()
        if protocol is not None:
            protocol.close_after_answer(self._cycle_of())
        else:
            self._transport.close()


def closing_answer(status_line: bytes, body: str | bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole JSON answer (``status_line`` as uvicorn's ``STATUS_LINE`` has it) that ends the connection.

    ``headers`` (lower-case names, salara's own values: no CR or LF) go before the body's.
    """
    data = body.encode() if isinstance(body, str) else body
    head = [status_line]
    for name, value in headers:
        head += (name, b": ", value, b"\r\n")
    head += (JSON_TYPE, b"content-length: %d\r\n" % len(data), b"connection: close\r\n\r\n", data)
    return b"".join(head)


def can_answer_whole(cycle: Any) -> bool:
    """Whether :func:`answer_whole` would write the answer of uvicorn's request ``cycle`` (see there)."""
    return not (cycle.response_started or cycle.disconnected or cycle.flow.write_paused or cycle.access_log)


def answer_whole(
    status_lines: dict[int, bytes],
    cycle_type: Any,
    send: Any,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> bool:
    """Answer ``status`` with the JSON ``body`` to the request of ASGI ``send``, in one write; False: not done.

    ``send`` must be the uvicorn cycle's own (of type ``cycle_type``), not
    a middleware's wrapper of it (False then). The protocol offers this
    with ``status_lines`` and ``cycle_type`` bound
    (``scope["extensions"][WHOLE_ANSWER_EXTENSION]["send"](send, status, body)``).

    What uvicorn's ``send`` of ``http.response.start`` (``content-type:
    application/json`` and the ``content-length``) then of the whole body
    does, without building, awaiting and checking the two messages: the
    server's default headers (``date``), ``connection: close`` when the
    connection is not kept alive, the cycle's state and its completion
    callback. ``headers`` (lower-case names, salara's own values: no CR or
    LF) go first, as in the ASGI answer; ``connection: close`` among them
    ends the connection after the answer. The caller sends the answer the ASGI way when this is False:
    the answer has begun already, the client has gone, the transport is
    not taking writes (its buffer is over the high-water mark), or an access
    log line is to be written.
    """
    cycle: Any = getattr(send, "__self__", None)
    if type(cycle) is not cycle_type or not can_answer_whole(cycle):
        return False
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    parts = [status_lines[status]]
    for name, value in cycle.default_headers:
        parts += (name, b": ", value, b"\r\n")
    closing = False
    for name, value in headers:
        if name == b"connection" and value.lower() == b"close":
            cycle.keep_alive = False
            closing = True
        parts += (name, b": ", value, b"\r\n")
    parts += (b"content-length: %d\r\n" % len(body), JSON_TYPE)  # in the order of the ASGI answer's headers
    if not cycle.keep_alive and not closing:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    transport = cycle.transport
    transport.write(b"".join(parts))  # nothing is held back: the head goes with the body
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        transport.close()
    cycle.on_response()
    return True


QuickAnswer = Callable[[dict[str, Any], bytes], tuple[int, bytes, list[tuple[bytes, bytes]]] | None]
"""``(scope, body) -> (status, JSON body, headers) or None``: a request's whole answer made at once, without awaiting.

None: the request goes the ASGI way (its answer needs Asterisk, or it is not the answerer's).
"""


class QuickLane:
    """Where the app leaves the protocol a :data:`QuickAnswer` (None until the app has one).

    Salara's protocol (:func:`~salara.api.security.connections.http_protocol`)
    asks it for the answer to a request whose body has all arrived before it
    starts the request's ASGI task; an answer known at once (most polls of
    old CRMs) is written there and then, without the task, its coroutines
    and the two ASGI sends.
    """

    answer: QuickAnswer | None = None
