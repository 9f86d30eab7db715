"""``edgeseq serve``'s WebSocket connection: websockets' asyncio server connection, with the
stream's messages delivered straight from its data callback.

``websockets`` parses each chunk of bytes with its sans-I/O protocol (a generator per
read, a ``Frame`` per message) and puts every message on a queue that a task reads with
``async for`` — a wakeup, a task switch and futures per message. After the handshake,
:class:`StreamSocket` hands each complete data message to its
:class:`~edgeseq.serve._connection.Connection` in the same callback (``on_message``), and
replies go out with :meth:`StreamSocket.write_now` (one header and one transport write;
no send lock, no drain).

Once attached, it also frames the common case itself: a whole, masked, unfragmented text
or binary frame within the size limit is unmasked and delivered directly. Every other
frame (ping, pong, close, fragments, anything malformed or too big) is handed, whole, to
websockets' protocol, which therefore always sees complete frames and keeps its state
(pings, close handshake, errors) exactly as if it had parsed everything; handshake and
HTTP answers stay websockets'. Reading pauses while the connection has too much in flight
or the transport's write buffer is full (a client that does not read its replies).
"""

from __future__ import annotations

import contextlib
import struct
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State

from edgeseq.client._wsframes import at_frame_start

if TYPE_CHECKING:
    from edgeseq.serve._connection import Connection

__all__ = ["StreamSocket"]

_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_TEXT, _BINARY = 0x81, 0x82  # first byte of a whole (FIN) text / binary frame, no RSV bits
_LEN16, _LEN64 = struct.Struct("!H"), struct.Struct("!Q")
_EARLY = 64  # messages kept before the stream is attached; reading pauses past that


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
        self._framing = False  # frames are parsed here (see the module docstring)
        self._buf = b""  # the start of a frame that has not fully arrived

    # ------------------------------------------------------------------ the connection's side
    def attach(self, conn: Connection) -> None:
        """Deliver messages to ``conn`` from now on (those that came early first)."""
        self._conn = conn
        early, self._early = self._early, []
        for message in early:
            conn.on_message(message)
        self.release("early")
        if self.protocol.state is State.CLOSED:
            conn.on_closed()
        self._framing = self.protocol.state is State.OPEN and at_frame_start(self.protocol)

    def write_now(self, message: str | bytes) -> bool:
        """Send one message without waiting; False once the connection is closing."""
        protocol = self.protocol
        if protocol.state is not State.OPEN or protocol.expect_continuation_frame:
            return False
        if isinstance(message, str):
            payload, first = message.encode(), _TEXT
        else:
            payload, first = message, _BINARY
        n = len(payload)
        if n < 126:
            head = bytes((first, n))
        elif n < 65536:
            head = bytes((first, 126)) + _LEN16.pack(n)
        else:
            head = bytes((first, 127)) + _LEN64.pack(n)
        try:
            self.transport.write(head + payload)
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
    def data_received(self, data: bytes) -> None:
        if not self._framing:
            super().data_received(data)
            return
        buf = self._buf + data if self._buf else data
        conn, protocol = self._conn, self.protocol
        limit = protocol.max_message_size
        pos, end_of_data = 0, len(buf)
        while end_of_data - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            n, head = second & 0x7F, pos + 2
            if n == 126:
                if end_of_data - pos < 4:
                    break
                n, head = _LEN16.unpack_from(buf, head)[0], head + 2
            elif n == 127:
                if end_of_data - pos < 10:
                    break
                n, head = _LEN64.unpack_from(buf, head)[0], head + 8
            if not second & 0x80 or (limit is not None and n > limit):
                # unmasked or too big: websockets refuses it (and closes) from here on
                self._framing, self._buf = False, b""
                super().data_received(buf[pos:])
                return
            end = head + 4 + n
            if end > end_of_data:
                break
            if first in (_BINARY, _TEXT) and self._parts is None:
                payload = apply_mask(buf[head + 4 : end], buf[head : head + 4])
                assert conn is not None
                conn.on_message(payload if first == _BINARY else payload.decode("utf-8", "replace"))
            else:  # ping, pong, close, a fragment: websockets' protocol, one whole frame
                super().data_received(buf[pos:end])
                if protocol.state is not State.OPEN:  # closing: websockets takes the rest
                    self._framing, self._buf = False, b""
                    if end < end_of_data:
                        super().data_received(buf[end:])
                    return
            pos = end
        self._buf = buf[pos:] if pos < end_of_data else b""

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
            if len(self._early) >= _EARLY:
                self.hold("early")  # until the stream is attached
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
