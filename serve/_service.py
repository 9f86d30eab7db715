"""The server's core, whatever carries its bytes: one model, one shared :class:`StreamPool`,
the streams' registry and saves, the handshake's decisions, one stream's life, background
saves and the graceful stop.

Transports sit on top and only move bytes: ``_server`` (the ``websockets`` server of
``edgeseq serve``) and ``_ray_replica`` (an ASGI app inside a Ray Serve replica). A socket
handed to :meth:`StreamService.serve_stream` needs what :class:`~edgeseq.serve._connection.
Connection` uses: ``async for`` messages, ``send``, ``close(code, reason)``,
``transport.abort()`` and ``remote_address`` — or, like ``_socket.StreamSocket``,
``attach`` (messages by callback) and ``write_now``. Frames messages of every connection
are stepped together once per loop tick (``_ticks``).

A service that is one of several sharing a state folder (Ray) gets an :class:`Ownership`:
it takes a stream's lease before serving it and gives it back when the stream leaves
memory, so no two servers ever step one stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from edgeseq.client import protocol as P
from edgeseq.errors import EdgeseqError, StreamError
from edgeseq.runtime import StreamPool
from edgeseq.runtime._session import ModelSource
from edgeseq.serve._connection import Connection
from edgeseq.serve._frames import WireFormat
from edgeseq.serve._handshake import Answer, Handshake, Ownership, Plan
from edgeseq.serve._metrics import CONTENT_TYPE, Metrics
from edgeseq.serve._options import ServeOptions
from edgeseq.serve._registry import Registry, StreamRecord
from edgeseq.serve._store import Saved, StateStore
from edgeseq.serve._ticks import Ticker

__all__ = ["Answer", "Ownership", "Plan", "StreamService"]

Endpoint = Callable[[dict[str, list[str]]], Awaitable["Answer"]]


class StreamService:
    """Streams of one model over any transport (see the module docstring)."""

    def __init__(
        self,
        model: ModelSource,
        options: ServeOptions,
        log: Callable[[str], None],
        ownership: Ownership | None = None,
        guard: Callable[[str], None] | None = None,
    ) -> None:
        self.options = o = options
        self.log = log
        self.ownership = ownership
        self.connections: set[Connection] = set()
        self.metrics = Metrics(lambda: len(self.pool), lambda: len(self.connections))
        self.pool = StreamPool(
            model,
            max_streams=o.max_streams,
            options=o.loading,
            idle_timeout=o.idle_timeout,
            max_batch=o.max_batch,
            max_wait_ms=o.max_wait_ms,
            on_evict=lambda pool_id, snap: self.registry.on_evict(pool_id, snap),
            on_batch=self.metrics.on_batch,
        )
        self.wire = WireFormat(self.pool.engine)
        self.contract_json = self.pool.contract.to_json()
        self.model_hash = self.pool.engine.hash
        store = None
        if o.state_dir is not None:
            store = StateStore(o.state_dir, self.model_hash, guard)
        self.registry = Registry(
            self.pool,
            store,
            o.max_inflight,
            log,
            lambda r: self.metrics.saves.labels(r).inc(),
            ownership.release if ownership is not None else lambda sid: None,
        )
        self.page = resources.files("edgeseq.serve").joinpath("page.html").read_text("utf-8")
        # the largest text message is a restore: a snapshot in base64, with room to spare
        snap = len(self.pool.snapshot(self.pool.open()).to_bytes())
        self.pool.close(0)
        frames = o.max_frames_per_message * self.wire.features * 8
        self.max_message = max(1 << 20, 2 * frames, 4 * snap)
        self.stopping = False
        self.stepped: OrderedDict[str, int] = OrderedDict()  # frames each stream stepped here
        self.endpoints: dict[str, Endpoint] = {
            P.MODEL_PATH: self._model_endpoint,
            P.METRICS_PATH: self._metrics_endpoint,
        }
        self._tasks: list[asyncio.Task] = []
        self.handshake = Handshake(self)

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Begin background work on the running event loop."""
        self.ticker = Ticker(self)
        self._tasks = [asyncio.create_task(self._housekeeping())]

    async def stop_streams(self) -> tuple[bool, int]:
        """Stop accepting, finish in-flight work, save every stream (``--state-dir``), end
        every connection with a resume notice. ``(all saved, detached streams saved)``."""
        self.stopping = True
        for task in self._tasks:
            task.cancel()

        async def save_all() -> int:
            await asyncio.gather(*(c.stop("final") for c in list(self.connections)))
            n = await self.save_detached("shutdown")
            await asyncio.to_thread(self.registry.flush)
            return n

        try:
            return True, await asyncio.wait_for(save_all(), self.options.shutdown_timeout)
        except (asyncio.TimeoutError, EdgeseqError, OSError) as exc:
            self.log(f"shutdown: could not save every stream ({type(exc).__name__}: {exc})")
            return False, 0

    def close(self) -> None:
        """Release the pool and the step and save threads (after :meth:`stop_streams`)."""
        self.ticker.close()
        self.pool.shutdown()
        self.registry.close()

    async def _housekeeping(self) -> None:
        """Evict idle streams (the pool saves them through its hook) and save changed
        streams every ``save_interval`` seconds."""
        o = self.options
        tick = min(1.0, (o.idle_timeout or 4.0) / 4, o.save_interval or 1.0)
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            try:
                if o.idle_timeout is not None:
                    await asyncio.to_thread(self.pool.evict_idle)
                due = o.save_interval and time.monotonic() - last_save >= o.save_interval
                if self.registry.store is not None and due:
                    last_save = time.monotonic()
                    await self.save_detached("periodic")
                    for rec in self.registry.held():
                        if rec.owner is not None and _changed(rec):
                            rec.owner.request_save("periodic")
            except EdgeseqError as exc:  # one failed round (e.g. a refused save): go on
                self.log(f"housekeeping: {type(exc).__name__}: {exc}")

    async def save_detached(self, reason: str) -> int:
        """Save changed streams no connection serves (their state cannot move meanwhile)."""
        if self.registry.store is None:
            return 0
        futures = []
        for rec in self.registry.held():
            if rec.owner is None and not rec.leaving and _changed(rec):
                snap = await asyncio.to_thread(self.registry.snapshot_of, rec)
                futures.append(self.registry.save(rec, snap, reason))
        for f in futures:
            await asyncio.wrap_future(f)
        return len(futures)

    async def hand_over(self, stream_id: str) -> None:
        """Another server wants this stream: stop serving it, save it exactly, forget it."""
        rec = self.registry.records.get(stream_id)
        if rec is None or rec.leaving:
            if rec is None and self.ownership is not None:
                self.ownership.release(stream_id)
            return
        rec.leaving = True
        if rec.owner is not None:
            await rec.owner.stop("handover")
        if self.registry.store is not None:
            snap = await asyncio.to_thread(self.registry.snapshot_of, rec)
            await asyncio.wrap_future(self.registry.save(rec, snap, "handover"))
        await asyncio.to_thread(self.registry.forget, rec)
        self.log(f"moved  stream={stream_id[:8]} handed over at seq {rec.seq}")

    async def abandon(self, stream_ids: set[str] | None, why: str) -> None:
        """Drop streams from memory without saving them (``None``: every stream): their
        connections close with 1012 and resume elsewhere from the last save."""
        for rec in self.registry.held():
            if stream_ids is not None and rec.id not in stream_ids:
                continue
            rec.leaving = True
            if rec.owner is not None:
                await rec.owner.stop("abandon")
            await asyncio.to_thread(self.registry.forget, rec)
            if why:
                self.log(f"drop   stream={rec.id[:8]} at seq {rec.seq}: {why}")

    def count_stepped(self, stream_id: str, frames: int) -> None:
        """Count frames a stream stepped on this server (a bounded, most-recent table)."""
        table = self.stepped
        table[stream_id] = table.pop(stream_id, 0) + frames
        if len(table) > _STEPPED:
            table.popitem(last=False)

    # ------------------------------------------------------------------ HTTP + handshake
    async def admit(
        self, path: str, query: dict[str, list[str]], headers: Any, peer: str, offered: list[str]
    ) -> Answer | Plan:
        """The answer to one HTTP request, or the plan of an accepted stream handshake
        (``_handshake``). ``headers`` has ``get`` and ``get_all``; ``offered`` lists the
        WebSocket subprotocols the client offered."""
        return await self.handshake.admit(path, query, headers, peer, offered)

    async def _model_endpoint(self, query: dict[str, list[str]]) -> Answer:
        return Answer(200, self.contract_json, "application/json")

    async def _metrics_endpoint(self, query: dict[str, list[str]]) -> Answer:
        return Answer(200, self.metrics.render().decode(), CONTENT_TYPE)

    # ------------------------------------------------------------------ streams
    async def serve_stream(self, ws: Any, plan: Plan) -> None:
        """Serve one accepted stream connection until it ends."""
        if plan.resume is None:
            try:
                rec, token = await asyncio.to_thread(self.registry.create)
            except StreamError as exc:  # filled up since the handshake
                self.metrics.refused.labels("unavailable").inc()
                await ws.close(1013, str(exc)[:120])
                return
            if self.ownership is not None and not await self.ownership.acquire(rec.id, True):
                await asyncio.to_thread(self.registry.end, rec, "its lease could not be taken")
                await ws.close(1013, "cannot reach the stream ledger; try again")
                return
            kind, first, info = "new", [], "new"
            ready = self._ready(rec, token)
            if self.registry.store is not None:
                snap = await asyncio.to_thread(self.registry.snapshot_of, rec)
                self.registry.save(rec, snap, "opened")
        else:
            sid, found, acked = plan.resume
            rec = found if isinstance(found, StreamRecord) else self.registry.adopt(sid, found)
            if self.ownership is not None and not self.ownership.holds(sid):
                # handed on while this connection was being admitted: never serve it unowned
                if rec.owner is None:
                    await asyncio.to_thread(self.registry.forget, rec)
                await ws.close(1013, "the stream moved to another server; resume it")
                return
            if rec.owner is not None:
                await rec.owner.stop("handover")
            kind = "saved" if rec.restored is not None else "live"
            restored, rec.restored = rec.restored, None
            first = [p for s, p in rec.replies if s > acked] if acked >= 0 else []
            assert plan.secret is not None
            ready = self._ready(rec, plan.secret, kind, restored, len(first))
            info = f"resumed ({kind}) at seq {rec.seq}"
            if restored:
                when = time.strftime("%H:%M:%S", time.localtime(restored.saved_at))
                info += f", saved {restored.reason} at {when}"
                notice = P.Resumed(rec.frames, rec.seq, restored.reason, restored.saved_at)
                first.append(P.encode(notice))
        conn = Connection(self, ws, rec, plan.binary)
        self.registry.attach(rec, conn)
        self.connections.add(conn)
        self.metrics.connects.labels(kind).inc()
        self.log(f"open   stream={rec.id[:8]} peer={conn.peer} {info}")
        try:
            await conn.run([P.encode(ready), *first])
        finally:
            self.connections.discard(conn)
            done = f"{conn.outcome} (seq {rec.seq}, {rec.frames} frames)"
            self.log(f"close  stream={rec.id[:8]} peer={conn.peer} {done}")

    def _ready(
        self,
        rec: StreamRecord,
        token: str,
        kind: str | None = None,
        restored: Saved | None = None,
        redeliver: int = 0,
    ) -> P.Ready:
        w = self.wire
        return P.Ready(
            stream=rec.id,
            resume_token=token,
            features=w.features,
            dtype=w.dtype,
            outputs=w.describe(),
            window=w.window,
            max_frames=self.options.max_frames_per_message,
            frame_shape=list(w.trailing),
            seq=rec.seq,
            frames=rec.frames,
            resumed=kind,
            reason=restored.reason if restored else None,
            saved_at=restored.saved_at if restored else None,
            saved=rec.saved if self.registry.store is not None else None,
            redeliver=redeliver,
            window_samples=w.window_samples,
        )


_STEPPED = 1 << 16  # streams whose per-stream frame counts are kept (most recent)


def _changed(rec: StreamRecord) -> bool:
    return rec.saved is None or rec.seq > rec.saved
