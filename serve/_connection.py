"""One WebSocket connection serving one stream: read messages, submit, reply in order.

Two tasks per connection. The *reader* decodes each message and submits frames to the
shared pool at once (``submit`` keeps a stream's requests in order and batches them with
other streams'); it queues one item per message. The *writer* takes the items in order,
awaits each result, counts ``seq``, and sends the reply — so replies come back in the
order messages were sent, while up to ``max_inflight`` messages are in flight.

Control messages (reset, snapshot, restore) and saves are *barriers*: the reader submits
nothing after one until the writer has run it, so a snapshot always matches its ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from edgeseq.client import protocol as P
from edgeseq.errors import EdgeseqError, ProtocolError, SnapshotError, StreamError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from websockets.asyncio.server import ServerConnection

    from edgeseq.serve._registry import StreamRecord
    from edgeseq.serve._service import StreamService

__all__ = ["Connection"]

CLOSE_SHUTDOWN = 1012  # service restart
CLOSE_TAKEN_OVER = 4000  # the stream was resumed on another connection
STOP_GRACE = 10.0  # seconds a stopping connection may take to flush its replies


@dataclass(eq=False)
class _Item:
    kind: str  # frames | error | control | save | end | final | handover | abandon | closed
    t0: float = 0.0
    future: Future | None = None
    pool_id: int | None = None
    payload: Any = None  # frames: (x, single, T); control: message; save: reason
    done: asyncio.Future | None = None  # barriers: resolved when the writer ran them
    slot: bool = False  # holds one of the connection's in-flight slots


class Connection:
    """Serves ``rec`` over ``ws`` until the client ends, drops, or the server stops."""

    def __init__(
        self, server: StreamService, ws: ServerConnection, rec: StreamRecord, binary: bool
    ) -> None:
        self.server = server
        self.ws = ws
        self.rec = rec
        self.binary = binary
        host, port = (ws.remote_address or ("?", "?"))[:2]
        self.peer = f"{host}:{port}"
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.slots = asyncio.Semaphore(server.options.max_inflight)
        self.gate = asyncio.Event()  # cleared while a barrier is pending
        self.gate.set()
        self.reopening = False  # the pool evicted the stream under in-flight frames
        self.sending = True  # False once the socket is gone: keep counting, stop sending
        self.finished = asyncio.Event()
        self.outcome = "dropped"
        self._reader: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self, first: list[str | bytes]) -> None:
        for message in first:  # ready, then re-delivered replies
            await self._send(message)
        writer = asyncio.create_task(self._write())
        self._reader = asyncio.create_task(self._read())
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            await writer
        finally:
            self.finished.set()

    async def stop(self, kind: str) -> None:
        """Stop reading; the writer finishes what is queued, then runs ``kind``
        (``final``: save and tell the client to resume later; ``handover``: detach;
        ``abandon``: close unsaved, the stream resumes elsewhere from its last save)."""
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        self.queue.put_nowait(_Item(kind))
        try:  # a client that reads no replies must not hold the others' shutdown
            await asyncio.wait_for(asyncio.shield(self.finished.wait()), STOP_GRACE)
        except asyncio.TimeoutError:
            self.sending = False
            self.ws.transport.abort()  # its pending send fails; the writer finishes the rest
            await self.finished.wait()

    def request_save(self, reason: str) -> None:
        """Queue a save barrier (periodic saves)."""
        if self.gate.is_set() and not self.finished.is_set():
            self.gate.clear()
            self.queue.put_nowait(_Item("save", payload=reason))

    # ------------------------------------------------------------------ reader
    async def _read(self) -> None:
        try:
            async for message in self.ws:
                t0 = time.perf_counter()
                if isinstance(message, (bytes, bytearray)):
                    await self._on_frames(message, t0)
                    continue
                try:
                    msg = P.decode(message, "client")
                except ProtocolError as exc:
                    self._refuse(exc)
                    continue
                if isinstance(msg, P.End):
                    self.queue.put_nowait(_Item("end"))
                    return
                item = _Item(
                    "control", t0, payload=msg, done=asyncio.get_running_loop().create_future()
                )
                self.queue.put_nowait(item)
                await item.done  # a barrier: nothing is submitted until it ran
        except ConnectionClosed:
            pass
        self.queue.put_nowait(_Item("closed"))

    async def _on_frames(self, data: bytes, t0: float) -> None:
        await self.slots.acquire()
        wire = self.server.wire
        try:
            arr = P.decode_frames(
                data, wire.features, wire.dtype, self.server.options.max_frames_per_message
            )
        except ProtocolError as exc:
            self._refuse(exc, slot=True)
            return
        x, single = wire.to_model(arr)
        pool, rec = self.server.pool, self.rec
        for _ in range(1000):
            while not self.gate.is_set():
                await self.gate.wait()
            if self.reopening or rec.pool_id is None:
                await self.queue.join()  # every earlier message done (re-submitted in order)
                self.reopening = False
                await asyncio.to_thread(self.server.registry.ensure_open, rec)
                continue  # the gate may have closed meanwhile
            pool_id = rec.pool_id
            try:
                fut = pool.submit(pool_id, x)
            except StreamError:  # evicted this instant: the hook is parking it
                if pool_id in pool:
                    raise
                await asyncio.sleep(0.001)
                continue
            except EdgeseqError as exc:
                self._refuse(ProtocolError(str(exc), "bad_frames"), slot=True)
                return
            self.queue.put_nowait(
                _Item("frames", t0, fut, pool_id, (x, single, arr.shape[0]), slot=True)
            )
            return
        raise RuntimeError("stream could not be reopened after eviction")  # pragma: no cover

    def _refuse(self, exc: ProtocolError, slot: bool = False) -> None:
        self.server.metrics.refused.labels(exc.reason).inc()
        text = P.encode(P.Error(str(exc), exc.reason))
        self.queue.put_nowait(_Item("error", payload=text, slot=slot))

    # ------------------------------------------------------------------ writer
    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                if item.kind == "frames":
                    await self._reply_frames(item)
                elif item.kind == "error":
                    await self._send(item.payload)
                elif item.kind == "control":
                    await self._control(item.payload)
                elif item.kind == "save":
                    await self._save(item.payload, wait=False)
                else:
                    await self._finish(item.kind)
                    return
            except EdgeseqError as exc:  # a failed call changes nothing: say so, go on
                reason = getattr(exc, "reason", None) or (
                    "bad_snapshot" if isinstance(exc, SnapshotError) else "bad_frames"
                )
                self.server.metrics.refused.labels(reason).inc()
                await self._send(P.encode(P.Error(str(exc), reason)))
            finally:
                if item.done is not None and not item.done.done():
                    item.done.set_result(None)
                if item.kind == "save":
                    self.gate.set()
                if item.slot:
                    self.slots.release()
                self.queue.task_done()

    async def _reply_frames(self, item: _Item) -> None:
        rec, pool = self.rec, self.server.pool
        x, single, t = item.payload
        try:
            out = await self.server.completions.watch(item.future)  # type: ignore[arg-type]
        except StreamError:
            if rec.pool_id == item.pool_id and item.pool_id in pool:
                raise
            # evicted before this batch ran: reopen from its snapshot, run it again, in order
            self.reopening = True
            await asyncio.to_thread(self.server.registry.ensure_open, rec)
            out = await self.server.completions.watch(pool.submit(rec.pool_id, x))  # type: ignore[arg-type]
        rec.seq += 1
        rec.frames += t
        self.server.count_stepped(rec.id, t)
        rows = self.server.wire.rows(out, single)
        if self.binary:
            first = next(iter(rows.values()))
            payload: str | bytes = np.ascontiguousarray(first, "<f4").tobytes()
        else:
            body = {name: r.tolist() for name, r in rows.items()}
            payload = P.outputs_text(t, body, rec.seq, rec.saved)
        self.server.registry.remember(rec, rec.seq, payload)
        await self._send(payload)
        self.server.metrics.messages.inc()
        self.server.metrics.step_seconds.observe(time.perf_counter() - item.t0)

    async def _control(self, msg: P.Message) -> None:
        rec, reg, pool = self.rec, self.server.registry, self.server.pool
        if isinstance(msg, P.SnapshotMsg):
            snap = await asyncio.to_thread(reg.snapshot_of, rec)
            await self._send(
                P.encode(P.SnapshotMsg(P.b64encode(snap.to_bytes()), rec.seq, rec.saved))
            )
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
        await self._send(text)

    async def _save(self, reason: str, wait: bool) -> bool:
        """Snapshot the stream now (nothing in flight) and write it; False without a store."""
        reg = self.server.registry
        if reg.store is None:
            return False
        snap = await asyncio.to_thread(reg.snapshot_of, self.rec)
        self.gate.set()  # the snapshot is taken: the reader may go on
        fut = reg.save(self.rec, snap, reason)
        if wait:
            await asyncio.wrap_future(fut)
        return True

    async def _finish(self, kind: str) -> None:
        rec, server = self.rec, self.server
        if kind == "end":
            await asyncio.to_thread(server.registry.end, rec, "ended by its client")
            self.outcome = f"ended, {rec.frames} frames"
            await self._send(P.encode(P.End(rec.frames, rec.seq)))
            await self.ws.close()
            return
        rec.owner = None
        if kind == "final":
            saved = await self._save("shutdown", wait=True)
            end = P.End(rec.frames, rec.seq, "shutdown", rec.id if saved else None, rec.saved)
            self.outcome = "saved at shutdown" if saved else "closed at shutdown (no --state-dir)"
            await self._send(P.encode(end))
            await self.ws.close(CLOSE_SHUTDOWN, "server shutting down")
        elif kind == "handover":
            self.outcome = "handed over to a resuming connection"
            await self.ws.close(CLOSE_TAKEN_OVER, "stream resumed on another connection")
        elif kind == "abandon":  # this server lost the stream's lease: it resumes elsewhere
            self.outcome = "dropped: the stream's ownership moved"
            await self.ws.close(CLOSE_SHUTDOWN, "stream moved; resume it")
        else:  # the client went away: the stream waits in the pool for a resume
            self.outcome = "detached"

    async def _send(self, message: str | bytes) -> None:
        if not self.sending:
            return
        try:
            await self.ws.send(message)
        except ConnectionClosed:
            self.sending = False  # keep applying and counting what is queued
