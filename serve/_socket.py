"""``edgeseq serve``'s WebSocket connection: websockets' asyncio server connection, with the
stream's messages delivered straight from its data callback.

``websockets`` parses each chunk of bytes with its sans-I/O protocol and puts every
message on a queue that a task reads with ``async for`` — a wakeup, a task switch and
futures per message. After the handshake, :class:`StreamSocket` hands each complete data
message to its :class:`~edgeseq.serve._connection.Connection` in the same callback
(``on_message``), and replies go out with :meth:`StreamSocket.write_now` (the protocol
frames them, the transport writes them; no send lock, no drain). Everything else —
handshake, HTTP answers, pings, close handshake, size limits — stays websockets'.
Reading pauses while the connection has too much in flight or the transport's write
buffer is full (a client that does not read its replies).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

if TYPE_CHECKING:
    from edgeseq.serve._connection import Connection

__all__ = ["StreamSocket"]

_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class StreamSocket(ServerConnection):
    """A ``websockets`` server connection that delivers messages by callback once attached."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edgeseq_plan: Any = None  # what the handshake decided (``_server``)
        self._conn: Connection | None = None
        self._early: list[str | bytes] = []  # messages before the connection attached
        self._parts: list[bytes] | None = None  # a fragmented message being assembled
        self._parts_text = False
        self._holds: set[str] = set()  # why reading is paused

    # ------------------------------------------------------------------ the connection's side
    def attach(self, conn: Connection) -> None:
        """Deliver messages to ``conn`` from now on (those that came early first)."""
        self._conn = conn
        early, self._early = self._early, []
        for message in early:
            conn.on_message(message)
        if self.protocol.state is State.CLOSED:
            conn.on_closed()

    def write_now(self, message: str | bytes) -> bool:
        """Send one message without waiting; False once the connection is closing."""
        if self.protocol.state is not State.OPEN:
            return False
        try:
            if isinstance(message, str):
                self.protocol.send_text(message.encode())
            else:
                self.protocol.send_binary(message)
            self.send_data()
        except Exception:  # the transport is gone
            return False
        return True

    def hold(self, why: str) -> None:
        """Pause reading for ``why`` (until :meth:`release`)."""
        if not self._holds:
            with contextlib.suppress(Exception):
                self.transport.pause_reading()
        self._holds.add(why)

    def release(self, why: str) -> None:
        if why in self._holds:
            self._holds.discard(why)
            if not self._holds:
                with contextlib.suppress(Exception):
                    self.transport.resume_reading()

    # ------------------------------------------------------------------ websockets' callbacks
    def process_event(self, event: Any) -> None:
        if self.request is None or not isinstance(event, Frame) or event.opcode not in _DATA:
            super().process_event(event)  # the handshake, pings, pongs, close
            return
        if event.opcode is Opcode.CONT:
            if self._parts is None:  # pragma: no cover - the protocol refuses this
                return
            self._parts.append(bytes(event.data))
            if not event.fin:
                return
            data, text, self._parts = b"".join(self._parts), self._parts_text, None
        elif not event.fin:
            self._parts, self._parts_text = [bytes(event.data)], event.opcode is Opcode.TEXT
            return
        else:
            data, text = event.data, event.opcode is Opcode.TEXT
        message = bytes(data).decode("utf-8", "replace") if text else data
        if self._conn is None:
            self._early.append(message)
        else:
            self._conn.on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._conn is not None:
            self._conn.on_closed()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.hold("write")  # the client does not read: stop reading it too

    def resume_writing(self) -> None:
        super().resume_writing()
        self.release("write")
