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
        """Step streams ``ids`` by one frame or one chunk of ``T`` frames each, given as one
        array; return the outputs as arrays whose first axis follows ``ids``.

        The array front of :meth:`step` for a gateway or batch driver that holds its
        streams' frames as one array: ids are looked up, frames checked and outputs
        returned as whole arrays, with no Python per stream (``step`` builds and reads a
        dict). Row ``i`` of the result is what ``step({ids[i]: frames[i]})[ids[i]]``
        gives. Stepping some of the pool's streams runs one call over just those rows.

        Parameters
        ----------
        ids
            N distinct open stream ids, as ``open()`` returned them: a sequence of ints or
            a 1-D integer array, in any order.
        frames
            ``[N, *frame]``: row ``i`` is one frame of stream ``ids[i]`` (``[N, F]`` for a
            feature model, ``[N]`` for token ids or raw samples); or ``[N, T, *frame]``:
            row ``i`` is a chunk of ``T >= 1`` frames of stream ``ids[i]`` (``[N, T, F]``,
            ``[N, T]``), the same ``T`` for every stream.

        Returns
        -------
        ``[N, *out]`` for a model with one data output (``[N, O]`` for a per-frame head;
        ``[N, T, O]`` for chunks), else ``{output name: [N, ...]}``.

        The guarantees of :meth:`step`: dtype, shape and values (finite as the model
        receives them, after input scaling) are checked once for the whole array; an id
        that is unknown, closed, not an int or repeated is refused by name; a refused call
        changes no stream. Chunks run in rounds of at most ``max_frames_per_call`` frames,
        as ``step`` runs them. Streams not named keep their state; frame counters, last use
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
                x, t, checked = self._frames_of(sids, frames)
                if t:  # chunks [N, T, ...]
                    ys = self._rows.run_chunks(rows, x, self._cap)
                else:
                    got = self._rows.run_batch(rows, x, checked)
                    if got is None:  # not finite as the model reads it: nothing ran
                        self._checked(sids, x, 0)  # raises, naming the stream at fault
                    ys = got  # type: ignore[assignment]
                self._commit(sids, rows, t or 1)
                gone = self._sweep(keep=_Keep(sids))  # the streams named here count as used
        finally:
            self._notify(gone)
        if len(ys) == 1:
            return ys[0]
        return {s.name: y for s, y in zip(self.engine.data_outputs, ys)}

    def _commit(self: StreamPool, sids: Sequence[int], rows: np.ndarray, frames: int = 1) -> None:
        """A call of ``frames`` frames for each of ``sids`` (on ``rows``) succeeded: count it."""
        self._table.used_rows(sids, rows, self._clock(), frames)
        if self._on_batch is not None:
            self._on_batch(len(rows), len(rows) * frames)

    def _ids(self: StreamPool, ids: Any) -> list[int]:
        if self._windowed:
            raise InputError(
                "step_rows() returns the same number of output rows for every stream; this pool "
                "has a window, so a stream's frames may complete zero or more windows. Use "
                "step({id: frames})."
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
                "stream at most once per call. Step it again in another call, or send its frames "
                "as one chunk: frames shaped [N, T, ...]."
            )
        return rows  # type: ignore[return-value]

    def _frames_of(self: StreamPool, sids: list[int], frames: Any) -> tuple[np.ndarray, int, bool]:
        """``frames`` as one array ``[N, *frame]`` (one frame each) or ``[N, T, *frame]``
        (chunks); the frames per stream (0: one frame each, as ``[N, *frame]``); and whether
        the values are checked. An exact array of single frames (the model's dtype and
        frame shape) is left to be scaled and checked where the model reads it."""
        spec = self.engine.frames
        n, rank = len(sids), len(spec.trailing)
        if (
            type(frames) is np.ndarray
            and frames.dtype == spec.dtype
            and frames.shape == (n, *spec.one_shape)
            and spec.fixed
            and not spec.is_int
        ):
            return frames, 0, False
        try:
            arr = np.asarray(frames)
        except Exception as exc:  # ragged lists and the like
            raise InputError(
                f"step_rows() expects frames as one array [N, *frame] or [N, T, *frame], got "
                f"something that is not an array ({exc})."
            ) from None
        if arr.ndim not in (rank + 1, rank + 2) or arr.shape[0] != n:
            dims = ", ".join(str(d) for d in ("N", *spec.trailing))
            chunks = ", ".join(str(d) for d in ("N", "T", *spec.trailing))
            raise InputError(
                f"step_rows() expects frames shaped [{dims}] (one frame each) or [{chunks}] "
                f"(T frames each) with N = {n} (one row for each id, in the order of ids), got "
                f"shape {arr.shape}."
            )
        t = arr.shape[1] if arr.ndim == rank + 2 else 0
        if arr.ndim == rank + 2 and t == 0:
            raise InputError(
                f"step_rows() expects at least one frame per stream (T >= 1), got frames shaped "
                f"{arr.shape}. Skip the call instead."
            )
        return self._checked(sids, arr, t), t, True

    def _checked(self: StreamPool, sids: list[int], arr: np.ndarray, t: int) -> np.ndarray:
        """``arr`` (``[N, *frame]``, or ``[N, T, *frame]`` when ``t``) checked as the model
        receives it; a refusal names the first stream at fault."""
        spec = self.engine.frames
        try:
            if t:  # chunks: every frame of every row at once
                flat = arr.reshape(-1, *arr.shape[2:])
                x, _ = spec.check(flat)
                return x.reshape(arr.shape[:2] + x.shape[1:])
            x, _ = spec.check(arr)
        except InputError as exc:
            for sid, row in zip(sids, arr):  # refused: find and name the stream at fault
                self._check(sid, row)
            raise InputError(f"step_rows() frames: {exc}") from None
        return x
