"""Which streams the server holds: public ids, resume secrets, pool rows, saves.

A stream is *attached* (a connection serves it), *detached* (its connection dropped; its
state waits in the pool for a resume), *parked* (the pool evicted it for idleness; its
snapshot waits in memory until it is written or resumed) or *saved* (only on disk).
The pool's ``on_evict`` hook parks a stream from the pool's thread; everything else runs
on the event loop. Pool calls are never made while this registry's lock is held.
``on_gone(stream id)`` is told whenever a record leaves memory (ended, handed over, or
forgotten once its save is its only home): a server among several releases its ownership.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from edgeseq.runtime import Snapshot, StreamPool
from edgeseq.serve._store import Saved, StateStore, token_hash, valid_id

__all__ = ["Registry", "StreamRecord"]

_REMEMBER = 4096  # ended ids kept for precise 404 messages


@dataclass(eq=False)
class StreamRecord:
    """The server's view of one stream."""

    id: str
    token_sha256: str
    pool_id: int | None = None
    seq: int = 0  # state-changing messages applied
    frames: int = 0  # frames applied since the stream was opened
    saved: int | None = None  # seq covered by the last durable save
    owner: Any = None  # the Connection serving it
    parked: Snapshot | None = None  # evicted for idleness; reopened from this
    replies: deque = field(default_factory=deque)  # (seq, payload): for re-delivery
    restored: Saved | None = None  # set when it came back from the state folder
    leaving: bool = False  # being handed over to another server: resumes here must wait


class Registry:
    """Stream records by public id and by pool row; saves through one writer thread."""

    def __init__(
        self,
        pool: StreamPool,
        store: StateStore | None,
        keep_replies: int,
        log: Callable[[str], None],
        on_saved: Callable[[str], None] = lambda reason: None,
        on_gone: Callable[[str], None] = lambda stream_id: None,
    ) -> None:
        self.pool = pool
        self.store = store
        self.keep_replies = keep_replies
        self.log = log
        self.on_saved = on_saved
        self.on_gone = on_gone
        self.records: dict[str, StreamRecord] = {}
        self.by_pool: dict[int, StreamRecord] = {}
        self.ended: OrderedDict[str, str] = OrderedDict()
        self.lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="edgeseq-save")

    # ------------------------------------------------------------------ lifecycle
    def create(self) -> tuple[StreamRecord, str]:
        """A new stream at the initial state, with a fresh id and resume secret."""
        token = secrets.token_urlsafe(32)  # 256 bits
        pool_id = self.pool.open()
        while True:
            sid = secrets.token_urlsafe(16)  # 128 bits
            with self.lock:
                if sid not in self.records and sid not in self.ended:
                    rec = StreamRecord(sid, token_hash(token), pool_id)
                    self.records[sid] = rec
                    self.by_pool[pool_id] = rec
                    return rec, token

    def find(self, sid: str) -> StreamRecord | Saved | None:
        """A stream held in memory, else its save on disk, else None."""
        if not valid_id(sid):
            return None
        with self.lock:
            rec = self.records.get(sid)
        if rec is not None:
            return rec
        return self.store.load(sid) if self.store is not None else None

    def adopt(self, sid: str, saved: Saved) -> StreamRecord:
        """Bring a stream saved on disk back into memory (parked: the pool opens it on use)."""
        with self.lock:
            rec = self.records.get(sid)
            if rec is None:
                rec = StreamRecord(
                    sid, saved.token_sha256, None, saved.seq, saved.frames, saved.seq
                )
                rec.parked, rec.restored = saved.snapshot, saved
                rec.replies.extend(saved.replies[-self.keep_replies :])
                self.records[sid] = rec
            return rec

    def attach(self, rec: StreamRecord, owner: Any) -> None:
        """``owner`` serves ``rec`` now; a record forgotten after its save comes back."""
        with self.lock:
            rec.owner = owner
            self.records.setdefault(rec.id, rec)

    def ensure_open(self, rec: StreamRecord) -> int:
        """The stream's pool row, reopening it from its parked snapshot if it was evicted.

        Blocking (the pool's lock): call it from a worker thread, not the event loop.
        """
        for _ in range(2000):  # the pool runs on_evict after releasing its lock: wait for it
            with self.lock:
                pool_id = rec.pool_id
            if pool_id is None or pool_id in self.pool:
                break
            time.sleep(0.0005)
        with self.lock:
            if rec.pool_id is not None:
                return rec.pool_id
            snap = rec.parked
        pool_id = self.pool.open(snap)
        with self.lock:
            rec.pool_id, rec.parked = pool_id, None
            self.by_pool[pool_id] = rec
        return pool_id

    def end(self, rec: StreamRecord, why: str) -> None:
        """Forget a finished stream: close its row, delete its save. Blocking."""
        with self.lock:
            self.records.pop(rec.id, None)
            pool_id, rec.pool_id, rec.parked = rec.pool_id, None, None
            if pool_id is not None:
                self.by_pool.pop(pool_id, None)
            self.ended[rec.id] = why
            if len(self.ended) > _REMEMBER:
                self.ended.popitem(last=False)
        if pool_id is not None and pool_id in self.pool:
            self.pool.close(pool_id)
        if self.store is not None:
            self._writer.submit(self.store.delete, rec.id)
        self.on_gone(rec.id)

    def forget(self, rec: StreamRecord) -> None:
        """Drop a stream from memory, its save kept (it lives on elsewhere now). Blocking."""
        with self.lock:
            if self.records.get(rec.id) is rec:
                del self.records[rec.id]
            pool_id, rec.pool_id, rec.parked = rec.pool_id, None, None
            if pool_id is not None:
                self.by_pool.pop(pool_id, None)
        if pool_id is not None and pool_id in self.pool:
            self.pool.close(pool_id)
        self.on_gone(rec.id)

    # ------------------------------------------------------------------ eviction
    def on_evict(self, pool_id: int, snap: Snapshot) -> None:
        """The pool's hook (its thread, its lock held): park the stream, save it."""
        with self.lock:
            rec = self.by_pool.pop(pool_id, None)
            if rec is None:
                return
            rec.pool_id, rec.parked = None, snap
            keep = rec.owner is not None or self.store is not None
            if not keep:  # detached and nowhere to save it: gone
                self.records.pop(rec.id, None)
                self.ended[rec.id] = (
                    "expired after the idle timeout (the server has no --state-dir)"
                )
        if not keep:
            self.on_gone(rec.id)
        if keep and self.store is not None and (rec.saved is None or rec.seq > rec.saved):
            self.save(rec, snap, "idle", forget=True)
        elif keep and rec.owner is None:
            self._forget_if_parked(rec, snap)
        fate = "saved" if self.store else "kept" if keep else "dropped"
        self.log(f"idle  stream={rec.id[:8]} evicted, {fate}")

    # ------------------------------------------------------------------ saving
    def save(self, rec: StreamRecord, snap: Snapshot, reason: str, forget: bool = False) -> Future:
        """Write ``snap`` (taken at ``rec.seq``) in the writer thread; ``rec.saved`` follows.

        ``forget``: once written, drop a still-parked, detached record from memory (the
        file is its home now).
        """
        assert self.store is not None
        seq, frames, replies = rec.seq, rec.frames, list(rec.replies)

        def write() -> None:
            self.store.save(rec.id, snap, rec.token_sha256, seq, frames, reason, replies)  # type: ignore[union-attr]
            if rec.saved is None or seq > rec.saved:
                rec.saved = seq
            self.on_saved(reason)
            if forget:
                self._forget_if_parked(rec, snap)

        return self._writer.submit(write)

    def _forget_if_parked(self, rec: StreamRecord, snap: Snapshot) -> None:
        with self.lock:
            gone = rec.owner is None and rec.parked is snap and self.store is not None
            if gone and self.records.get(rec.id) is rec:
                del self.records[rec.id]
            else:
                gone = False
        if gone:
            self.on_gone(rec.id)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued write."""
        self._writer.submit(lambda: None).result(timeout)

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    # ------------------------------------------------------------------ views
    def snapshot_of(self, rec: StreamRecord) -> Snapshot:
        """The stream's current state (pool or parked). Blocking."""
        with self.lock:
            pool_id, parked = rec.pool_id, rec.parked
        if pool_id is None:
            assert parked is not None
            return parked
        return self.pool.snapshot(pool_id)

    def remember(self, rec: StreamRecord, seq: int, payload: str | bytes) -> None:
        rec.replies.append((seq, payload))
        if len(rec.replies) > self.keep_replies:
            rec.replies.popleft()

    def held(self) -> list[StreamRecord]:
        with self.lock:
            return list(self.records.values())
