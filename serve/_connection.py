"""One WebSocket connection serving one stream: take messages, step them, reply in order.

Messages come in through :meth:`Connection.on_message`, called straight from the socket's
data callback (``_socket.StreamSocket``) or, on other transports (ASGI), by a reader task.
A frames message takes the *fast path* when nothing is waiting before it: it is decoded at
once and handed to the service's :class:`~edgeseq.serve._ticks.Ticker`, which steps every
connection's messages of one loop tick together and writes each reply as soon as its
round has run — no task, queue or future per message.

Anything else — a control message, a periodic save, the end, or any message that arrives
while one of those waits — goes to the *backlog*, which one task works through in order:
frames are still handed to the ticker (in order behind the earlier ones), while control
messages and saves are *barriers* that run once every earlier message has been answered,
so a snapshot always matches its ``seq``. When the backlog is empty the fast path resumes.
At most ``max_inflight`` messages are in flight; past that the connection stops reading
its socket until replies have gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from edgeseq.client import protocol as P
from edgeseq.errors import EdgeseqError, ProtocolError, SnapshotError
from edgeseq.serve._ticks import FramesItem

if TYPE_CHECKING:
    from edgeseq.serve._registry import StreamRecord
    from edgeseq.serve._service import StreamService

__all__ = ["Connection"]

CLOSE_SHUTDOWN = 1012  # service restart
CLOSE_TAKEN_OVER = 4000  # the stream was resumed on another connection
STOP_GRACE = 10.0  # seconds a stopping connection may take to flush its replies
_BINARY = (bytes, bytearray, memoryview)


class _Mark:
    """A backlog entry that is not a client message: a save, or how the connection ends
    (``end`` from the client, ``closed`` by it, ``final``/``handover``/``abandon``)."""

    __slots__ = ("kind", "reason")

    def __init__(self, kind: str, reason: str = "") -> None:
        self.kind, self.reason = kind, reason


class Connection:
    """Serves ``rec`` over ``ws`` until the client ends, drops, or the server stops."""

    def __init__(self, server: StreamService, ws: Any, rec: StreamRecord, binary: bool) -> None:
        self.server = server
        self.ws = ws
        self.rec = rec
        self.binary = binary
        host, port = (ws.remote_address or ("?", "?"))[:2]
        self.peer = f"{host}:{port}"
        self.max_inflight = server.options.max_inflight
        self.inflight = 0  # frames messages handed to the ticker, not yet answered
        self.backlog: deque[tuple[Any, float]] = deque()  # (message or _Mark, arrival)
        self.reading = True  # False once the connection is ending: later messages are dropped
        self.sending = True  # False once the socket is gone: keep counting, stop sending
        self.paused = False  # reading paused: too much in flight
        self.finished = asyncio.Event()
        self.outcome = "dropped"
        self._direct = hasattr(ws, "attach")  # a StreamSocket: sync writes, callbacks
        self._worker: asyncio.Task | None = None  # works through the backlog
        self._idle: asyncio.Future | None = None  # resolved once inflight <= _idle_at
        self._idle_at = 0
        self._save_queued = False
        self._out: asyncio.Queue | None = None  # other transports: replies for the writer
        self._room = asyncio.Event()  # other transports: set while reading may go on
        self._room.set()
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ lifecycle
    async def run(self, first: list[str | bytes]) -> None:
        if self._direct:
            for message in first:  # ready, then re-delivered replies
                self._write(message)
            self.ws.attach(self)  # messages (and the socket's end) arrive as callbacks now
        else:
            self._out = asyncio.Queue()
            for message in first:
                self._out.put_nowait(message)
            tasks = (self._write_out(), self._read())
            self._tasks = [asyncio.create_task(t) for t in tasks]
        try:
            await self.finished.wait()
        finally:
            for task in self._tasks:
                task.cancel()

    async def stop(self, kind: str) -> None:
        """Stop reading; what was read is answered, then ``kind`` runs (``final``: save and
        tell the client to resume later; ``handover``: detach; ``abandon``: close unsaved,
        the stream resumes elsewhere from its last save)."""
        self._queue_mark(_Mark(kind))
        try:  # a client that reads no replies must not hold the others' shutdown
            await asyncio.wait_for(asyncio.shield(self.finished.wait()), STOP_GRACE)
        except asyncio.TimeoutError:
            self.sending = False
            self.ws.transport.abort()  # its pending send fails; the rest finishes unsent
            await self.finished.wait()

    def request_save(self, reason: str) -> None:
        """Save the stream at the next message boundary (periodic saves)."""
        if not self._save_queued and self.reading:
            self._save_queued = True
            self._queue_mark(_Mark("save", reason))

    def on_closed(self) -> None:
        """The socket is gone: answer (unsent) what was read, then detach the stream."""
        self.sending = False
        self._queue_mark(_Mark("closed"))

    def _queue_mark(self, mark: _Mark) -> None:
        if self.finished.is_set() or (not self.reading and mark.kind == "save"):
            return
        if mark.kind != "save":
            self.reading = False
        self.backlog.append((mark, 0.0))
        self._kick()

    # ------------------------------------------------------------------ taking messages
    def on_message(self, message: str | bytes) -> None:
        """One client message, in arrival order (the loop; never blocks)."""
        if not self.reading:
            return
        t0 = time.perf_counter()
        if (
            self.backlog
            or self._worker is not None
            or self.inflight >= self.max_inflight
            or not isinstance(message, _BINARY)
        ):
            self.backlog.append((message, t0))
            self._kick()
        else:
            self._frames(message, t0)
        if not self.paused and self.inflight + len(self.backlog) >= self.max_inflight:
            self.paused = True
            if self._direct:
                self.ws.hold("inflight")
            else:
                self._room.clear()

    def _resume_reading(self) -> None:
        if self.paused and self.inflight + len(self.backlog) < self.max_inflight:
            self.paused = False
            if self._direct:
                self.ws.release("inflight")
            else:
                self._room.set()

    def _frames(self, data: Any, t0: float) -> None:
        """Decode a frames message and hand it to the ticker (or its error, in its place)."""
        wire = self.server.wire
        try:
            arr = P.decode_frames(  # NaN/Inf: checked for the whole batch by the pool's step
                data, wire.features, wire.dtype, self.server.options.max_frames_per_message, False
            )
        except ProtocolError as exc:
            self._refuse(exc, t0)
            return
        x, single = wire.to_model(arr)
        self.inflight += 1
        self.server.ticker.add(FramesItem(self, x, single, arr.shape[0], t0))

    def _refuse(self, exc: ProtocolError, t0: float) -> None:
        """Answer a bad message with an ``error`` in its place, behind earlier frames."""
        text = P.encode(P.Error(str(exc), exc.reason))
        self.inflight += 1
        self.server.ticker.add(FramesItem(self, None, False, 0, t0, text, exc.reason))

    def reply(self, payload: str | bytes) -> None:
        """The ticker's answer to one of this connection's frames messages, in order."""
        self._write(payload)
        self.inflight -= 1
        idle = self._idle
        if idle is not None and self.inflight <= self._idle_at:
            self._idle = None
            if not idle.done():
                idle.set_result(None)
        self._resume_reading()

    async def _until(self, most: int) -> None:
        """Wait until at most ``most`` frames messages are in flight."""
        while self.inflight > most:
            self._idle_at = most
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    # ------------------------------------------------------------------ the backlog
    def _kick(self) -> None:
        if self._worker is None and not self.finished.is_set():
            self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        try:
            while self.backlog:
                message, t0 = self.backlog.popleft()
                if isinstance(message, _Mark):
                    await self._until(0)
                    if message.kind == "save":
                        self._save_queued = False
                        await self._guarded(self._save(message.reason, wait=False))
                        continue
                    await self._finish(message.kind)
                    return
                if isinstance(message, _BINARY):
                    await self._until(self.max_inflight - 1)
                    self._frames(message, t0)
                    continue
                try:
                    msg = P.decode(message, "client")
                except ProtocolError as exc:
                    self._refuse(exc, t0)
                    continue
                await self._until(0)  # a barrier: every earlier message answered first
                if isinstance(msg, P.End):
                    await self._finish("end")
                    return
                await self._guarded(self._control(msg))
        except Exception as exc:  # a bug: end this connection, never the server
            self.server.log(f"error  stream={self.rec.id[:8]}: {type(exc).__name__}: {exc}")
            self.outcome = f"failed ({type(exc).__name__})"
            self.reading = self.sending = False
            self.rec.owner = None
            with contextlib.suppress(Exception):
                self.ws.transport.abort()
            self.finished.set()
        finally:
            self._worker = None
            if self.backlog and not self.finished.is_set():
                self._kick()  # arrived while the last step was finishing
            self._resume_reading()

    async def _guarded(self, job: Any) -> None:
        """Run a control job; a failed call changes nothing: say so and go on."""
        try:
            await job
        except EdgeseqError as exc:
            reason = getattr(exc, "reason", None) or (
                "bad_snapshot" if isinstance(exc, SnapshotError) else "bad_frames"
            )
            self.server.metrics.refused.labels(reason).inc()
            self._write(P.encode(P.Error(str(exc), reason)))

    async def _control(self, msg: P.Message) -> None:
        rec, reg, pool = self.rec, self.server.registry, self.server.pool
        if isinstance(msg, P.SnapshotMsg):
            snap = await asyncio.to_thread(reg.snapshot_of, rec)
            self._write(P.encode(P.SnapshotMsg(P.b64encode(snap.to_bytes()), rec.seq, rec.saved)))
            return
        if isinstance(msg, P.Reset):
            pool_id = await asyncio.to_thread(reg.ensure_open, rec)
            await asyncio.to_thread(pool.reset, pool_id)
            rec.seq += 1
            reply: P.Message = P.Reset(rec.seq, rec.saved)
        elif isinstance(msg, P.Restore):
            data = P.b64decode(msg.data)
            pool_id = await asyncio.to_thread(reg.ensure_open, rec)
            await asyncio.to_thread(pool.restore, pool_id, data)
            rec.seq += 1
            reply = P.Restore(None, rec.seq, rec.saved)
        else:  # the protocol table lets a client send only these
            raise ProtocolError(f"unexpected {msg.type!r}", "unknown_type")
        text = P.encode(reply)
        reg.remember(rec, rec.seq, text)
        self._write(text)

    async def _save(self, reason: str, wait: bool) -> bool:
        """Snapshot the stream now (nothing in flight) and write it; False without a store."""
        reg = self.server.registry
        if reg.store is None:
            return False
        snap = await asyncio.to_thread(reg.snapshot_of, self.rec)
        fut = reg.save(self.rec, snap, reason)
        if wait:
            await asyncio.wrap_future(fut)
        return True

    async def _finish(self, kind: str) -> None:
        rec, server = self.rec, self.server
        self.reading = False
        try:
            if kind == "end":
                await asyncio.to_thread(server.registry.end, rec, "ended by its client")
                self.outcome = f"ended, {rec.frames} frames"
                self._write(P.encode(P.End(rec.frames, rec.seq)))
                await self._close()
                return
            rec.owner = None
            if kind == "final":
                saved = await self._save("shutdown", wait=True)
                end = P.End(rec.frames, rec.seq, "shutdown", rec.id if saved else None, rec.saved)
                self.outcome = (
                    "saved at shutdown" if saved else "closed at shutdown (no --state-dir)"
                )
                self._write(P.encode(end))
                await self._close(CLOSE_SHUTDOWN, "server shutting down")
            elif kind == "handover":
                self.outcome = "handed over to a resuming connection"
                await self._close(CLOSE_TAKEN_OVER, "stream resumed on another connection")
            elif kind == "abandon":  # this server lost the stream's lease: it resumes elsewhere
                self.outcome = "dropped: the stream's ownership moved"
                await self._close(CLOSE_SHUTDOWN, "stream moved; resume it")
            else:  # the client went away: the stream waits in the pool for a resume
                self.outcome = "detached"
        finally:
            self.finished.set()

    # ------------------------------------------------------------------ sending
    def _write(self, message: str | bytes) -> None:
        if not self.sending:
            return
        if self._out is not None:
            self._out.put_nowait(message)
        elif not self.ws.write_now(message):
            self.sending = False  # keep applying and counting what is queued

    async def _close(self, code: int = 1000, reason: str = "") -> None:
        if self._out is not None and self.sending:
            await self._out.join()  # every reply out before the close frame
        with contextlib.suppress(ConnectionClosed):
            await self.ws.close(code, reason)

    # ------------------------------------------------------------------ other transports
    async def _read(self) -> None:
        """Other transports (``async for`` sockets): feed :meth:`on_message`."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.on_message(message)
                await self._room.wait()
        self.on_closed()

    async def _write_out(self) -> None:
        assert self._out is not None
        while True:
            message = await self._out.get()
            try:
                if self.sending:
                    await self.ws.send(message)
            except ConnectionClosed:
                self.sending = False
            finally:
                self._out.task_done()
