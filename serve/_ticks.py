"""Frames messages of every connection, gathered per event-loop tick and stepped together.

A connection hands each frames message to :class:`Ticker` as it is parsed (``add``). The
first message of a tick schedules one ``flush`` at the end of that tick; the flush takes
everything gathered, puts the *k*-th message of every connection into round *k* (so a
round names each stream once), and runs each round as ONE :meth:`StreamPool.step` — one
check of all rows, one onnxruntime call, no future or lock handoff per message. A small
flush (up to ``inline_frames`` frames in all: one frame from each of 256 streams) runs
inline on the loop, which costs least CPU per message; a bigger one runs on the step
thread, so long chunks never stall the loop (pings, handshakes, HTTP) — while it runs
the loop keeps reading, and what arrives meanwhile is the next flush. Replies are
written in round order, so each connection's replies come back in the order its messages
arrived; a refused message (bad size, NaN, ...) is an error item in its place, and
changes no stream. NaN/Inf is checked once per round, by the step itself.

If a round's step is refused as a whole (one bad row the wire checks could not see, or a
stream evicted for idleness since the message arrived), its messages run one by one: the
bad one gets its error, the evicted one is reopened from its snapshot and run, the
others run as they would have. An evicted stream that cannot be reopened because every
slot is taken gets an ``at_capacity`` error (nothing applied; send it again later) and
changes no other message's answer.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.client import protocol as P
from edgeseq.errors import EdgeseqError, ProtocolError, SnapshotError, StreamError

if TYPE_CHECKING:
    from edgeseq.serve._connection import Connection
    from edgeseq.serve._service import StreamService

__all__ = ["FramesItem", "Ticker"]


class FramesItem:
    """One frames message of one connection: its model frames, or the error it earned."""

    __slots__ = ("conn", "error", "reason", "single", "t", "t0", "x")

    def __init__(
        self,
        conn: Connection,
        x: np.ndarray | None,
        single: bool,
        t: int,
        t0: float,
        error: str | None = None,
        reason: str = "",
    ) -> None:
        self.conn, self.x, self.single, self.t, self.t0 = conn, x, single, t, t0
        self.error, self.reason = error, reason


class Ticker:
    """Per-tick batches of frames messages for ``service``'s pool (see the module docstring).

    ``inline_frames``: flushes of at most this many frames run inline on the loop, bigger
    ones on the step thread (0: always the thread).
    """

    def __init__(self, service: StreamService, inline_frames: int = 256) -> None:
        self.service = service
        self.loop = asyncio.get_running_loop()
        self.pending: list[FramesItem] = []
        self._scheduled = False
        self._busy = False
        self.inline_frames = inline_frames
        self._thread: ThreadPoolExecutor | None = ThreadPoolExecutor(
            1, thread_name_prefix="edgeseq-step"
        )

    def add(self, item: FramesItem) -> None:
        """Queue one message; it runs in this tick's flush (or after the running step)."""
        self.pending.append(item)
        if not self._scheduled and not self._busy:
            self._scheduled = True
            self.loop.call_soon(self._flush)

    def close(self) -> None:
        """Stop the step thread (after the connections stopped); later flushes run inline."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)

    # ------------------------------------------------------------------ the loop's side
    def _flush(self) -> None:
        self._scheduled = False
        if self._busy or not self.pending:
            return
        items, self.pending = self.pending, []
        rounds = _rounds(items)
        if self._thread is None or sum(it.t for it in items) <= self.inline_frames:
            try:
                results = self._compute(rounds)
            except Exception as exc:  # a bug, not a bad message: answer every message anyway
                results = [[exc] * len(items) for items in rounds]
            self._deliver(rounds, results)
            return
        self._busy = True
        fut = self._thread.submit(self._compute, rounds)
        fut.add_done_callback(lambda f: self.loop.call_soon_threadsafe(self._done, rounds, f))

    def _done(self, rounds: list[list[FramesItem]], fut: Any) -> None:
        self._busy = False
        try:
            results = fut.result()
        except Exception as exc:  # a bug, not a bad message: answer every message anyway
            results = [[exc] * len(items) for items in rounds]
        try:
            self._deliver(rounds, results)
        finally:
            if self.pending and not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self._flush)

    def _deliver(self, rounds: list[list[FramesItem]], results: list[list[Any]]) -> None:
        """Reply to every message, in round order (the loop: records, metrics, sockets)."""
        service = self.service
        wire, registry, metrics = service.wire, service.registry, service.metrics
        count = service.count_stepped
        now = time.perf_counter()
        started: list[float] = []  # arrival of each answered message
        for items, outs in zip(rounds, results):
            for item, out in zip(items, outs):
                conn = item.conn
                if item.error is not None:
                    metrics.refused.labels(item.reason).inc()
                    conn.reply(item.error)
                    continue
                if isinstance(out, Exception):
                    conn.reply(_refusal(metrics, out))
                    continue
                rec = conn.rec
                try:
                    if conn.binary:
                        first = next(iter(wire.rows(out, item.single).values()))
                        payload: str | bytes = np.ascontiguousarray(first, "<f4").tobytes()
                    else:
                        payload = wire.text(out, item.single, item.t, rec.seq + 1, rec.saved)
                except Exception as exc:  # a bug: still one reply per message, in order
                    conn.reply(_refusal(metrics, exc))
                    continue
                rec.seq += 1
                rec.frames += item.t
                count(rec.id, item.t)
                registry.remember(rec, rec.seq, payload)
                conn.reply(payload)
                started.append(item.t0)
        if started:
            metrics.messages.inc(len(started))
            metrics.step_seconds.observe_many(now - np.asarray(started))

    # ------------------------------------------------------------------ the step's side
    def _compute(self, rounds: list[list[FramesItem]]) -> list[list[Any]]:
        """Each round's outputs per message (an :class:`EdgeseqError` for a refused one;
        None for an error item)."""
        cap = self.service.pool.max_batch  # streams per onnxruntime call at most
        return [
            [out for k in range(0, len(items), cap) for out in self._round(items[k : k + cap])]
            for items in rounds
        ]

    def _round(self, items: list[FramesItem]) -> list[Any]:
        pool = self.service.pool
        todo = [(i, it) for i, it in enumerate(items) if it.error is None]
        outs: list[Any] = [None] * len(items)
        if not todo:
            return outs
        frames = {}
        for _, it in todo:
            pool_id = it.conn.rec.pool_id
            if pool_id is None or pool_id in frames:  # parked (idle): reopen it one by one
                break
            frames[pool_id] = it.x
        else:
            try:
                got = pool.step(frames)
            except Exception:
                pass  # one by one: each message gets its own outcome
            else:
                for (i, _), out in zip(todo, got.values()):
                    outs[i] = out
                return outs
        for i, it in todo:
            outs[i] = self._one(it)
        return outs

    def _one(self, it: FramesItem) -> Any:
        """One message alone: its outputs, or the error that refused it (nothing changed)."""
        service = self.service
        pool, rec = service.pool, it.conn.rec
        try:  # the wire's own reason for NaN/Inf (the batch left the check to the pool)
            P.check_finite(it.x.reshape(it.t, -1))  # type: ignore[union-attr]
        except ProtocolError as exc:
            return exc
        for _ in range(3):
            pool_id = rec.pool_id
            try:
                if pool_id is None:
                    pool_id = service.registry.ensure_open(rec)
                return pool.step({pool_id: it.x})[pool_id]
            except StreamError as exc:
                if pool_id is not None and rec.pool_id == pool_id and pool_id in pool:
                    return exc  # refused for its own reason; the stream is open
                # evicted meanwhile: the hook parks it; reopen from its snapshot, run again
                # (pool ids are never reused: a stale id is refused, never another stream's)
                try:
                    service.registry.ensure_open(rec)
                except StreamError:
                    if rec.pool_id is None:  # every slot taken: this message alone fails
                        return self._at_capacity(rec)
            except Exception as exc:
                return exc
        return StreamError(f"stream {rec.id[:8]}… could not be reopened after an eviction")

    def _at_capacity(self, rec: Any) -> StreamError:
        """The refusal of a message whose stream was evicted while idle and cannot be
        reopened now (every slot taken): nothing ran; the client may send it again."""
        err = StreamError(
            f"stream {rec.id[:8]}… was evicted while idle and the server is at capacity "
            f"(max_streams={self.service.pool.max_streams}), so it cannot be reopened now; "
            f"expected a free slot, got {len(self.service.pool)} streams held. Send this "
            f"message again later: nothing was applied (seq stays {rec.seq})"
        )
        err.reason = "at_capacity"  # type: ignore[attr-defined]
        return err


def _refusal(metrics: Any, exc: Exception) -> str:
    """The ``error`` reply to a message the pool refused (counted by reason)."""
    if isinstance(exc, EdgeseqError):
        reason = getattr(exc, "reason", None) or (
            "bad_snapshot" if isinstance(exc, SnapshotError) else "bad_frames"
        )
        text = str(exc)
    else:  # onnxruntime refused the frames: say what failed, keep the connection
        reason, text = "bad_frames", f"the model could not step these frames ({exc!r})"
    metrics.refused.labels(reason).inc()
    return P.encode(P.Error(text, reason))


def _rounds(items: list[FramesItem]) -> list[list[FramesItem]]:
    """Round *k* holds the *k*-th message of every connection, in arrival order."""
    rounds: list[list[FramesItem]] = []
    seen: dict[int, int] = {}
    for it in items:
        k = seen.get(id(it.conn), 0)
        seen[id(it.conn)] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(it)
    return rounds
