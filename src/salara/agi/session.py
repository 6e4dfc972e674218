"""One call's FastAGI session: commands sent one at a time, each answered by its reply.

The handler given to :class:`~salara.agi.server.AGIServer` gets an
:class:`AGISession` once Asterisk's variable block is read. Commands and
replies follow Asterisk's "AGI Commands" documentation (docs.asterisk.org);
the bytes are :mod:`salara.agi.protocol`'s and :mod:`salara.agi.commands`'.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

from salara.agi.protocol import CLOSED, NEED_DATA, AGIConnection, AGIReply, AGIRequest
from salara.errors import AGICommandError, AGIHangup, RemoteProtocolError

READ_BYTES: Final = 1 << 16
"""Most bytes asked of the socket per read."""


class AGISession:
    """One call's FastAGI session, handed to the handler.

    Commands run one at a time (concurrent calls wait their turn), each bound
    by ``command_timeout_s`` seconds. After a timeout, a broken or closed
    connection, or a cancelled command, the reply pairing can no longer be
    trusted: the session is closed and every later command raises
    :class:`AGIHangup`.
    """

    def __init__(
        self,
        request: AGIRequest,
        connection: AGIConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout_s: float,
        peer: str = "",
    ) -> None:
        self.request = request
        self.peer = peer
        self._connection = connection
        self._reader = reader
        self._writer = writer
        self._timeout_s = command_timeout_s
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def hungup(self) -> bool:
        """True once Asterisk reported the hangup (seen while reading a reply)."""
        return self._connection.hungup

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection; Asterisk continues the dialplan after the AGI line."""
        self._closed = True
        self._writer.close()

    async def command(self, name: str, *args: str | int, timeout_s: float | None = None) -> AGIReply:
        """Send one command (``"GET VARIABLE"``, ``"CRMID"``) and return its final reply.

        ``timeout_s`` overrides the session's command timeout; ``math.inf``
        waits for ever (``GOSUB`` runs dialplan before it answers). Raises
        :class:`AGICommandError` for a 4xx/5xx answer (the session stays
        usable), :class:`~salara.errors.LocalProtocolError` for an argument
        Asterisk cannot take (nothing sent, session usable),
        :class:`AGIHangup` when the session is over or the reply is late, and
        :class:`~salara.errors.RemoteProtocolError` when Asterisk broke the
        protocol (the session is closed).
        """
        limit = self._timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            if self._closed:
                raise AGIHangup(f"{name}: FastAGI session is closed")
            data = self._connection.send_command(name, *args)
            settled = False
            try:
                self._writer.write(data)
                async with asyncio.timeout(None if math.isinf(limit) else limit):
                    await self._writer.drain()
                    reply = await self._reply(name)
                settled = True
                return reply
            except AGICommandError:
                settled = True
                raise
            except TimeoutError:
                raise AGIHangup(f"{name}: no reply within {limit} s; session closed") from None
            except OSError as exc:
                raise AGIHangup(f"{name}: connection lost ({exc})") from exc
            finally:
                if not settled:
                    self.close()

    async def _reply(self, name: str) -> AGIReply:
        while True:
            event = self._connection.next_event()
            if event is NEED_DATA:
                self._connection.receive_data(await self._reader.read(READ_BYTES))
            elif event is CLOSED:
                raise AGIHangup(f"{name}: Asterisk closed the connection")
            elif isinstance(event, AGIReply):
                return event
            elif isinstance(event, AGICommandError):
                raise event
            else:
                raise RemoteProtocolError(f"{name}: unexpected {event!r}")

    async def get_variable(self, name: str) -> str | None:
        """A channel variable's value, or None when it is not set."""
        reply = await self.command("GET VARIABLE", name)
        return (reply.data or "") if reply.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        """``expression`` with ``${...}`` substituted (``"${CALLERID(num)}"``), or None."""
        reply = await self.command("GET FULL VARIABLE", expression)
        return (reply.data or "") if reply.result == "1" else None

    async def set_variable(self, name: str, value: str | int) -> None:
        """Set a channel variable."""
        await self.command("SET VARIABLE", name, value)

    async def exec(self, app: str, *args: str | int) -> AGIReply:
        """Run a dialplan application: ``exec("Goto", "sim", "9001", "1")``.

        Asterisk passes a single option string to the application, so ``args``
        are joined with ``,`` as in the dialplan (an argument holding a comma
        must be escaped by the caller). ``result`` is the application's return
        value; ``-2`` means no such application.
        """
        if args:
            return await self.command("EXEC", app, ",".join(str(arg) for arg in args))
        return await self.command("EXEC", app)

    async def verbose(self, message: str, level: int = 1) -> None:
        """Write ``message`` to Asterisk's console at verbosity ``level``."""
        await self.command("VERBOSE", message, level)

    async def hangup(self, channel: str | None = None) -> None:
        """Hang up this channel (or the channel named ``channel``)."""
        if channel is None:
            await self.command("HANGUP")
        else:
            await self.command("HANGUP", channel)
