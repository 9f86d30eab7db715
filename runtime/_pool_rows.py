"""StreamPool's array front: one frame for each of N streams as one ``[N, ...]`` array."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.errors import InputError, StreamError
from edgeseq.runtime._engine import Outputs
from edgeseq.runtime._pool_streams import Evicted
from edgeseq.runtime._streams import exact_id

if TYPE_CHECKING:
    from edgeseq.runtime.pool import StreamPool

__all__ = ["PoolRows"]


class _Keep:
    """The ids a call names, as a set built only if a sweep asks (rarely: it asks only
    about streams idle past the timeout)."""

    def __init__(self, sids: list[int]) -> None:
        self._sids, self._set = sids, None

    def __contains__(self, sid: object) -> bool:
        if self._set is None:
            self._set = set(self._sids)  # type: ignore[assignment]
        return sid in self._set  # type: ignore[operator]


class PoolRows:
    """:meth:`step_rows` and the commit it shares with ``step``."""

    def step_rows(self: StreamPool, ids: Sequence[int] | np.ndarray, frames: Any) -> Outputs:
        """Step streams ``ids`` by one frame each, given as one array; return the outputs
        as arrays whose first axis follows ``ids``.

        The array front of :meth:`step` for a gateway or batch driver that holds its
        streams' frames as one array: ids are looked up, frames checked and outputs
        returned as whole arrays, with no Python per stream (``step`` builds and reads a
        dict). Row ``i`` of the result is what ``step({ids[i]: frames[i]})[ids[i]]``
        gives.

        Parameters
        ----------
        ids
            N distinct open stream ids, as ``open()`` returned them: a sequence of ints or
            a 1-D integer array, in any order.
        frames
            ``[N, *frame]``: row ``i`` is one frame of stream ``ids[i]`` (``[N, F]`` for a
            feature model, ``[N]`` for token ids or raw samples).

        Returns
        -------
        ``[N, *out]`` for a model with one data output (``[N, O]`` for a per-frame head),
        else ``{output name: [N, ...]}``.

        The guarantees of :meth:`step`: dtype, shape and values (finite as the model
        receives them, after input scaling) are checked once for the whole array; an id
        that is unknown, closed, not an int or repeated is refused by name; a refused call
        changes no stream. Streams not named keep their state; frame counters, last use
        and the idle-eviction order are updated as ``step`` updates them; streams with
        pending ``submit`` requests are stepped after those have run. A pool with a
        ``window`` (whose streams return zero or more windows per frame) takes ``step``.
        """
        sids = self._ids(ids)
        self._in_order(sids)
        gone: Evicted = []
        try:
            with self._lock:
                self._check_alive()
                rows = self._rows_named(sids)
                x = self._frames_of(sids, frames)
                ys = self._rows.run_batch(rows, x)
                self._commit(sids, rows)
                gone = self._sweep(keep=_Keep(sids))  # the streams named here count as used
        finally:
            self._notify(gone)
        if len(ys) == 1:
            return ys[0]
        return {s.name: y for s, y in zip(self.engine.data_outputs, ys)}

    def _commit(self: StreamPool, sids: Sequence[int], rows: np.ndarray) -> None:
        """A call of one frame for each of ``sids`` (on ``rows``) succeeded: count it."""
        self._table.used_rows(sids, rows, self._clock())
        if self._on_batch is not None:
            self._on_batch(len(rows), len(rows))

    def _ids(self: StreamPool, ids: Any) -> list[int]:
        if self._windowed:
            raise InputError(
                "step_rows() steps one frame per stream and returns one output row each; this "
                "pool has a window, so a frame may complete zero windows. Use step({id: frames})."
            )
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1 or ids.dtype.kind not in "iu":
                raise InputError(
                    f"step_rows() expects ids as a 1-D integer array or a sequence of ints, got "
                    f"an array of dtype {ids.dtype} and shape {ids.shape}."
                )
            sids = ids.tolist()
        elif isinstance(ids, Sequence) and not isinstance(ids, (str, bytes)):
            sids = list(ids)
            if set(map(type, sids)) - {int}:  # numpy ints become ints; anything else: refused
                for i, sid in enumerate(sids):
                    sids[i] = exact_id(sid)
                    if sids[i] is None:
                        raise self._table.unknown(sid)
        else:
            raise InputError(
                f"step_rows() expects ids as a sequence of stream ids, got {type(ids).__name__}. "
                "E.g. pool.step_rows([a, b], frames) with frames shaped [2, ...]."
            )
        if not sids:
            raise InputError("step_rows() expects at least one stream id, got none.")
        return sids

    def _rows_named(self: StreamPool, sids: list[int]) -> np.ndarray:
        """The rows of open streams ``sids``, one each; the first unknown or repeated id is
        refused by name."""
        table = self._table
        rows = table.rows_of(sids)
        if rows is None:
            for sid in sids:
                table.get(sid)  # raises for the first that is not open
        n = len(rows)  # type: ignore[arg-type]
        order = np.arange(n)
        mark = self._mark
        mark[rows] = order  # a repeated row keeps its last position only
        twice = mark[rows] != order
        if twice.any():
            sid = sids[int(np.argmax(twice))]
            raise StreamError(
                f"stream {sid!r} appears more than once in step_rows() ids; expected each "
                "stream at most once per call (one frame each). Step it again in another call, "
                "or send its frames as a chunk with step({id: [T, ...]})."
            )
        return rows  # type: ignore[return-value]

    def _frames_of(self: StreamPool, sids: list[int], frames: Any) -> np.ndarray:
        """``frames`` checked as one array ``[N, *frame]`` as the model receives them."""
        spec = self.engine.frames
        n = len(sids)
        try:
            arr = np.asarray(frames)
        except Exception as exc:  # ragged lists and the like
            raise InputError(
                f"step_rows() expects frames as one array [N, *frame], got something that is "
                f"not an array ({exc})."
            ) from None
        if arr.ndim != len(spec.trailing) + 1 or arr.shape[0] != n:
            dims = ", ".join(str(d) for d in ("N", *spec.trailing))
            raise InputError(
                f"step_rows() expects frames shaped [{dims}] with N = {n} (one frame for each "
                f"id, in the order of ids), got shape {arr.shape}. For chunks of several "
                "frames per stream use step({id: [T, ...]})."
            )
        try:
            x, _ = spec.check(arr)
        except InputError as exc:
            for sid, frame in zip(sids, arr):  # refused: find and name the stream at fault
                self._check(sid, frame)
            raise InputError(f"step_rows() frames: {exc}") from None
        return x
