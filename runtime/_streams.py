"""The open streams of a pool: exact ids, their state rows, last use, and idle expiry.

:class:`StreamTable` is bookkeeping only (no model, no lock: the pool holds its lock around
every call). Streams are kept in order of last use when an idle timeout is set, so finding
the expired ones costs O(expired), however many streams are open.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Collection, Container, Iterable
from operator import itemgetter
from typing import Any

import numpy as np

from edgeseq.errors import StreamError

__all__ = ["Stream", "StreamTable", "exact_id"]

_REMEMBER = 4096  # closed/evicted ids kept for precise error messages


class Stream:
    """One open stream: its row of the pool's state store. Its frame count and last use
    live in the table's per-row arrays, so a batched call updates them in one array
    operation, not stream by stream."""

    __slots__ = ("_last", "_seen", "row")

    def __init__(self, row: int, seen: np.ndarray, last: np.ndarray) -> None:
        self.row = row
        self._seen, self._last = seen, last

    @property
    def frames_seen(self) -> int:
        return int(self._seen[self.row])

    @frames_seen.setter
    def frames_seen(self, value: int) -> None:
        self._seen[self.row] = value

    @property
    def last_used(self) -> float:
        return float(self._last[self.row])

    @last_used.setter
    def last_used(self, value: float) -> None:
        self._last[self.row] = value

    def __repr__(self) -> str:
        return f"Stream(row={self.row}, frames_seen={self.frames_seen}, last_used={self.last_used})"


def exact_id(sid: Any) -> int | None:
    """``sid`` as a stream id, or None: only ints (and numpy ints) are ids.

    ``True`` and ``1.0`` hash like ``1`` and would address stream 1 in a dict; they are
    refused instead.
    """
    if type(sid) is int:
        return sid
    if isinstance(sid, np.integer):
        return int(sid)
    return None


class StreamTable:
    """Open streams by id, the free rows, and why recently closed ids went."""

    def __init__(self, capacity: int, idle_timeout: float | None) -> None:
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self.open: dict[int, Stream] = {}  # in order of opening
        self.rows: dict[int, int] = {}  # stream id -> row, for batched lookups
        self.seen = np.zeros(capacity, np.int64)  # frames seen, per row
        self.last = np.zeros(capacity, np.float64)  # last use, per row
        # stream ids by last use, oldest first (only kept when streams can expire)
        self._lru: OrderedDict[int, None] | None = OrderedDict() if idle_timeout else None
        self._free = list(range(capacity - 1, -1, -1))
        self._gone: OrderedDict[int, str] = OrderedDict()
        self.next_id = 0

    def __len__(self) -> int:
        return len(self.open)

    # ------------------------------------------------------------------ lookups
    def get(self, sid: Any) -> Stream:
        """The open stream ``sid``; :class:`StreamError` for anything else."""
        stream = self.open.get(sid) if exact_id(sid) is not None else None
        if stream is None:
            raise self.unknown(sid)
        return stream

    def unknown(self, sid: Any) -> StreamError:
        if exact_id(sid) is None:
            return StreamError(
                f"stream id {sid!r} is a {type(sid).__name__}; expected the int returned by "
                "open() (ids must match exactly: True or 1.0 do not address stream 1)."
            )
        if sid in self._gone:
            return StreamError(
                f"stream {sid!r} was {self._gone[sid]}; expected an open stream id. open() a "
                "new stream (open(snapshot) resumes a saved one)."
            )
        some = list(self.open)[:5]
        return StreamError(
            f"unknown stream id {sid!r}; expected an id returned by open() (open now: "
            f"{len(self.open)}, e.g. {some}). Nothing was run."
        )

    # ------------------------------------------------------------------ changes
    def add(self, now: float, sid: int | None = None) -> tuple[int, Stream]:
        """Open a stream on a free row (a new id unless ``sid`` is given)."""
        if not self._free:
            raise StreamError(
                f"the pool is full: {self.capacity} streams open (max_streams={self.capacity}), "
                "so no new stream can open. close() streams you are done with, set "
                "idle_timeout to evict idle ones, or use a larger max_streams."
            )
        if sid is None:
            sid, self.next_id = self.next_id, self.next_id + 1
        row = self._free.pop()
        stream = self.open[sid] = Stream(row, self.seen, self.last)
        self.seen[row], self.last[row], self.rows[sid] = 0, now, row
        self._gone.pop(sid, None)
        if self._lru is not None:
            self._lru[sid] = None
        return sid, stream

    def release(self, sid: int, why: str) -> Stream:
        """Close ``sid``, freeing its row; later calls on it say ``why``."""
        stream = self.open.pop(sid)
        del self.rows[sid]
        self._free.append(stream.row)
        if self._lru is not None:
            del self._lru[sid]
        self._gone[sid] = why
        if len(self._gone) > _REMEMBER:
            self._gone.popitem(last=False)
        return stream

    def touch(self, sids: Iterable[int], now: float) -> None:
        """Mark streams as used at ``now`` (they move to the young end)."""
        lru, table = self._lru, self.open
        for sid in sids:
            table[sid].last_used = now
            if lru is not None:
                lru.move_to_end(sid)

    def expired(self, now: float, keep: Container[int] = ()) -> list[tuple[int, float]]:
        """``(id, seconds idle)`` of the streams idle for longer than the timeout, oldest
        first, except those in ``keep``; walks only the expired end of the order."""
        if self._lru is None:
            return []
        timeout, out = self.idle_timeout, []
        for sid in self._lru:
            idle = now - self.open[sid].last_used
            if idle <= timeout:  # type: ignore[operator]
                break
            if sid not in keep:
                out.append((sid, idle))
        return out

    def rows_of(self, sids: Collection[Any]) -> np.ndarray | None:
        """The rows of open streams ``sids`` (exact int ids, at least one) as one array, in
        order; None if any is not open (:meth:`get` then names it). One C-level lookup."""
        try:
            got = itemgetter(*sids)(self.rows)
        except KeyError:
            return None
        n = len(sids)
        return np.fromiter(got, np.intp, n) if n > 1 else np.array([got], np.intp)

    def used_rows(self, sids: Iterable[int], rows: np.ndarray, now: float, frames: int = 1) -> None:
        """Commit a call of ``frames`` frames for each stream ``sids`` on distinct ``rows``:
        two array operations, plus the idle order when streams can expire."""
        self.seen[rows] += frames
        self.last[rows] = now
        if self._lru is not None:
            deque(map(self._lru.move_to_end, sids), 0)

    def used_once(self, sids: Iterable[int], streams: Iterable[Stream], now: float) -> None:
        """:meth:`used_rows` with the streams' rows taken from ``streams``."""
        rows = np.array([st.row for st in streams], np.intp)
        self.used_rows(sids, rows, now)

    def used(self, items: Iterable[tuple[int, Stream, int]], now: float) -> None:
        """Commit a call: ``(id, stream, frames)`` each advanced by ``frames``, used at ``now``."""
        lru, seen, last = self._lru, self.seen, self.last
        for sid, stream, n in items:
            seen[stream.row] += n
            last[stream.row] = now
            if lru is not None:
                lru.move_to_end(sid)
