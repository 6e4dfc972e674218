"""The transport each request's uvicorn cycle writes to in salara's protocol (:mod:`salara.api.security.connections`).

:class:`OneWriteTransport` is :class:`~salara.api.security.linger.RequestTransport`
(the lingering close after a refused body) that also sends a fixed-length
answer's head and body in one write, and refers to its cycle and protocol
weakly, so a finished request is freed at once rather than by the cyclic
collector.
"""

from __future__ import annotations

import weakref
from typing import Any

from salara.api.security.linger import RequestTransport


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
