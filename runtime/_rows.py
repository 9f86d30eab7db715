"""Many streams' state as rows of preallocated arrays, and one batched call over any of them.

Host rows (the default on CPU): each state pair has one array of ``capacity`` rows on its
batch axis (e.g. ``(layers, capacity, hidden)``); left context has ``(capacity, N, ...)``.
A batched call gathers the rows it needs into a :class:`StateSlot`, runs the shared
:class:`Engine` once, and scatters the new rows back only after every call succeeded. On
CPU those arrays are the buffers of a ``capacity``-row slot, so a call of one frame for
every row runs on them in place (no gather, no scatter).

Resident rows (the default on a GPU): the whole table is one :class:`StateSlot` of
``capacity`` rows that never leaves the device. A call runs every row; the rows not
stepped get zero frames through the ``lengths`` input, and edgeseq's graphs keep a
zero-frame row's state unchanged (native graphs by a mask on ``sequence_lens``,
unrolled graphs by their frame mask). Rows cross to the host only when a stream is
opened, reset, snapshotted or restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.errors import InputError
from edgeseq.runtime._buffers import StateSlot, rows_first
from edgeseq.runtime._compact import Scratch, gather_rows, row_views, scatter_rows, scratch_blocks
from edgeseq.runtime._engine import Engine, Outputs

if TYPE_CHECKING:
    from edgeseq.runtime._buffers import _Plan

__all__ = ["RowStore", "bucket"]

_SLOTS = 16  # batch sizes kept ready at most
_SLOT_ROWS = 2  # ... holding at most this many times the pool's capacity in rows
_SHARED_SLOTS = 64  # batch sizes kept ready when they share one scratch table (host rows)


def bucket(batch: int) -> int:
    """``batch`` rounded up to 1..8, then four sizes per octave (10, 12, 14, 16, 20, 24...):
    at most a quarter of a call's rows are padding."""
    if batch <= 8:
        return batch
    step = 1 << (batch.bit_length() - 3)  # 2 for 9..15, 4 for 16..31, 8 for 32..63...
    return -(-batch // step) * step


class RowStore:
    """State rows of up to ``capacity`` streams of one engine."""

    def __init__(self, engine: Engine, capacity: int, resident: bool | None = None) -> None:
        self.engine = engine
        self.capacity = capacity
        self.resident = can_be_resident(engine) if resident is None else resident
        if self.resident and not can_be_resident(engine, strict=True):
            raise InputError(
                "resident=True needs an edgeseq-exported model with a lengths input "
                "(export(..., lengths=True), CLI --lengths) and no left context (zero-frame "
                "rows must keep their state); use resident=False."
            )
        self._init = engine.initial(1)
        self._slots: dict[int, StateSlot] = {}  # by batch size, least recently used first
        self._whole: StateSlot | None = None
        self._scratch: Scratch | None = None  # host memory every compact slot shares
        self._states: list[np.ndarray] = []
        self._direct = False
        if self.resident:
            self.table = engine.slot(capacity)  # every row, on the device
            self.context = None
            return
        if engine.device.memory == "cpu":  # the rows are a slot's buffers: see run_frames
            self._whole = engine.slot(capacity)
            self._scratch = scratch_blocks(engine, capacity)
            self._order = np.arange(capacity)
            self._in_order = self._order.tobytes()  # rows of a whole-table call, as given
        else:
            self._states = engine.initial(capacity)  # per pair, capacity rows on batch_axis
        self.context = engine.initial_context(capacity)  # (capacity, N, ...) or None
        # one frame per row runs through a bound plan: no left context, one graph call of
        # one frame (no padding to a fixed chunk), outputs per frame
        self._direct = (
            self._whole is not None
            and not engine.context
            and engine.windows is None
            and not engine.per_call
            and (not engine.chunk or engine.chunk == 1 or engine.step is not None)
            and row_views(self._whole) is not None  # type: ignore[arg-type]
        )

    @property
    def states(self) -> list[np.ndarray]:
        """Per pair, the ``capacity`` rows on its batch axis (host arrays, written in place)."""
        return self._whole.views() if self._whole is not None else self._states

    def write(self, row: int, states: Sequence[np.ndarray] | None = None, ctx: Any = 0) -> None:
        """Set one row: batch-1 ``states`` (default: the initial state) and context ``(N, ...)``."""
        if self.resident:  # a round trip of the table: only on open/reset/restore
            table = self.table.read()
            for store, arr, p in zip(table, states or self._init, self.engine.pairs):
                np.moveaxis(store, p.batch_axis, 0)[row] = np.moveaxis(arr, p.batch_axis, 0)[0]
            self.table.load(table)
            return
        for store, arr, p in zip(self.states, states or self._init, self.engine.pairs):
            np.moveaxis(store, p.batch_axis, 0)[row] = np.moveaxis(arr, p.batch_axis, 0)[0]
        if self.context is not None:
            self.context[row] = ctx

    def read(self, row: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """One row's states with batch 1 by state input name, and context ``(1, N, ...)``."""
        table = self.table.read() if self.resident else self.states
        states = {
            p.input: np.take(s, [row], axis=p.batch_axis) for s, p in zip(table, self.engine.pairs)
        }
        return states, None if self.context is None else self.context[row : row + 1].copy()

    def _slot(self, batch: int) -> StateSlot:
        """A slot of at least ``batch`` rows: batch sizes are rounded up to a few sizes per
        octave, and the slots kept are bounded in number and rows (least recently used
        go), so stepping every batch size from 1 to ``capacity`` holds O(capacity) rows.
        On the host the slots share one scratch table (:func:`._compact.scratch_blocks`),
        so every batch size of a pool up to 2^16 rows stays bound: a server whose streams
        send frames at their own pace steps a different number of rows every tick."""
        size = min(bucket(batch), self.capacity)
        slots = self._slots
        slot = slots.pop(size, None)
        if slot is None:
            slot = self.engine.slot(size, self._scratch)
            rows = sum(slots) + size
            most, room = (_SHARED_SLOTS, None) if self._scratch else (_SLOTS, _SLOT_ROWS)
            while slots and (len(slots) >= most or (room and rows > room * self.capacity)):
                rows -= next(iter(slots))
                del slots[next(iter(slots))]
        slots[size] = slot  # the most recently used last
        return slot

    def run(self, items: Sequence[tuple[int, np.ndarray, bool]]) -> list[Outputs]:
        """Run ``(row, checked chunk [T, ...], single)`` items; return each one's outputs.

        Rows of different frame counts share one call through the ``lengths`` input; a
        model without one gets one call per frame count. Rows are written back only after
        every call succeeded, so a failure changes no row.
        """
        if self.resident:
            return self._run_resident(items)
        eng = self.engine
        groups: dict[tuple, list[int]] = {}  # items that can share one call
        for i, (_, chunk, _) in enumerate(items):
            key = chunk.shape[1:] if eng.lengths_name else chunk.shape
            groups.setdefault(key, []).append(i)
        results: list[Outputs] = [None] * len(items)  # type: ignore[list-item]
        updates = []
        for members in groups.values():
            n = len(members)
            chunks = [items[i][1] for i in members]
            counts = np.array([len(c) for c in chunks], np.int32)
            total = int(counts.max())
            slot = self._slot(n)
            pad = slot.batch - n  # rows that ride along (copies of the first); dropped after
            if pad == 0 and np.all(counts == total):
                x = np.stack(chunks)  # (batch, T, ...)
            else:
                x = np.zeros((slot.batch, total, *chunks[0].shape[1:]), eng.frames.dtype)
                for r, c in enumerate(chunks):
                    x[r, : len(c)] = c  # zero-padded after each row's frames
                counts = np.concatenate([counts, np.full(pad, total, np.int32)])
            rows = np.array([items[i][0] for i in members])
            gathered = np.concatenate([rows, np.full(pad, rows[0])]) if pad else rows
            slot.gather(self.states, gathered)
            if self.context is not None:
                slot.context = self.context[gathered]
            ragged = bool(np.any(counts != total))
            outs = eng.run(x, counts if ragged else None, slot)
            # one group: scatter straight from the device buffers; several: copy, since
            # a later group of the same size reuses the slot
            states = slot.views() if len(groups) == 1 else slot.read()
            updates.append((rows, states, slot.context))
            singles = [items[i][2] for i in members]
            for i, res in zip(members, eng.split(outs, counts, singles)):
                results[i] = res
        for rows, states, ctx in updates:  # every call succeeded: commit
            n = len(rows)
            for store, arr, p in zip(self.states, states, eng.pairs):
                np.moveaxis(store, p.batch_axis, 0)[rows] = np.moveaxis(arr, p.batch_axis, 0)[:n]
            if ctx is not None:
                self.context[rows] = ctx[:n]  # type: ignore[index]
        return results

    def run_frames(self, rows: np.ndarray, x: np.ndarray) -> Sequence[Outputs]:
        """One checked frame per row (``x`` ``(n, *frame)`` as the model receives it, rows
        distinct), in one call: the many-streams path of :meth:`run`, with no per-row
        Python. Returns each row's outputs, in order."""
        return self._per_row(self.run_batch(rows, x))

    def run_joined(self, rows: np.ndarray, xs: np.ndarray) -> Sequence[Outputs] | None:
        """:meth:`run_frames` on frames as :meth:`FrameSpec.joined` gives them (not yet
        scaled or checked): None when a value is not finite as the model receives it; then
        nothing ran and no row changed (the caller checks stream by stream, which names
        the one at fault)."""
        ys = self._run_one_frame(rows, xs, False)
        return None if ys is None else self._per_row(ys)

    def run_batch(
        self, rows: np.ndarray, x: np.ndarray, checked: bool = True
    ) -> list[np.ndarray] | None:
        """:meth:`run_frames` with the outputs kept whole: one array ``(n, ...)`` per data
        output (rows in the order of ``rows``), postprocessed as the caller receives them.
        With ``checked=False``, ``x`` of the exact dtype and frame shape is scaled and
        checked where the model reads it: None if a value is then not finite (nothing ran,
        no row changed)."""
        return self._run_one_frame(rows, x, checked)

    def run_chunks(self, rows: np.ndarray, x: np.ndarray, cap: int | None) -> list[np.ndarray]:
        """``T`` checked frames per row (``x`` ``(n, T, ...)``, rows distinct) as one batched
        call (rounds of at most ``cap`` frames, as ``step`` runs them); returns one array
        ``(n, T, ...)`` per data output, rows first. A failure changes no row."""
        if self.resident:
            items = [(r, c, False) for r, c in zip(rows.tolist(), x)]
            return self._stacked(self._run_resident(items))
        eng, n = self.engine, len(rows)
        slot = self._slot(n)
        pad = slot.batch - n  # rows that ride along (copies of the first); dropped after
        gathered = np.concatenate([rows, np.full(pad, rows[0])]) if pad else rows
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        slot.gather(self.states, gathered)
        if self.context is not None:
            slot.context = self.context[gathered]
        step = cap or x.shape[1]
        pieces = [eng.run(x[:, t : t + step], None, slot) for t in range(0, x.shape[1], step)]
        outs = []
        for i, spec in enumerate(eng.result_specs):  # the rounds joined along time
            t = spec.time_axis
            parts = [p[i] for p in pieces]
            outs.append(parts[-1] if t is None or len(parts) == 1 else np.concatenate(parts, t))
        self._commit_slot(slot, rows)
        if any(s.batch_axis is None for s in eng.result_specs):  # shared by every row
            counts = np.full(n, x.shape[1], np.int32)
            return self._stacked(eng.split(outs, counts, [False] * n))
        ys = [np.moveaxis(o, s.batch_axis, 0)[:n].copy() for o, s in zip(outs, eng.result_specs)]  # type: ignore[arg-type]
        ys[0] = eng.postprocess(ys[0])
        return ys

    def _commit_slot(self, slot: StateSlot, rows: np.ndarray) -> None:
        """A gathered call succeeded: the slot's first rows become rows ``rows``' state."""
        n = len(rows)
        for store, arr, p in zip(self.states, slot.views(), self.engine.pairs):
            np.moveaxis(store, p.batch_axis, 0)[rows] = np.moveaxis(arr, p.batch_axis, 0)[:n]
        if slot.context is not None:
            self.context[rows] = slot.context[:n]  # type: ignore[index]

    def _per_row(self, ys: list[np.ndarray]) -> Sequence[Outputs]:
        """Whole outputs (:meth:`run_batch`) as each row's outputs."""
        if len(ys) == 1:
            return ys[0]  # row views of one fresh array: no row shares memory with another
        names = [s.name for s in self.engine.data_outputs]
        return [dict(zip(names, r)) for r in zip(*ys)]

    def _run_one_frame(
        self, rows: np.ndarray, xs: np.ndarray, checked: bool
    ) -> list[np.ndarray] | None:
        if self._direct:
            n = len(rows)
            every = n == self.capacity  # rows: a permutation of all rows, run in place
            slot = self._whole if every else self._slot(n)
            plan = slot.plan((1, *xs.shape[1:]), build=True)  # type: ignore[union-attr]
            if plan is not None and plan.many is not None:
                return self._run_bound(slot, plan, rows, xs, every, checked)  # type: ignore[arg-type]
        x = xs if checked else self.engine.frames.finite(xs)
        return None if x is None else self._run_checked(rows, x)

    def _run_bound(
        self,
        slot: StateSlot,
        plan: _Plan,
        rows: np.ndarray,
        xs: np.ndarray,
        every: bool,
        checked: bool,
    ) -> list[np.ndarray] | None:
        """One frame per row through ``plan``'s bound buffers: frames are written into the
        graph's input (one copy, or one scatter when the rows of a whole-table call come
        out of order) and, unless ``checked``, scaled and checked there; outputs come back
        as one gather."""
        eng, n = self.engine, len(rows)
        x, flat, outs = plan.many  # type: ignore[misc]
        src = xs if checked else eng.frames.scale(xs)
        shuffled = every and rows.tobytes() != self._in_order
        if shuffled:
            x[rows] = src
        else:
            x[:n] = src
            if not every:
                x[n:] = 0  # padding rows (copies of the first row's state), dropped below
        if not checked and not np.isfinite(flat).all():  # checked where the model reads them
            return None
        if plan.lengths is not None and not plan.full:
            plan.lengths.write(np.ones(slot.batch, np.int32))
            plan.full = True
        table = compact = None
        if not every:  # the stepped rows into the slot; its padding rows hold old rows'
            table, compact = row_views(self._whole), row_views(slot)  # type: ignore[arg-type]
            gather_rows(table[self._whole.cur], compact[slot.cur], rows)  # type: ignore[index, union-attr]
        try:
            plan.runs[slot.cur]()
        except Exception as exc:
            raise eng.refused(exc) from None
        slot.cur ^= 1  # a whole-table call: its new state is the rows' state now
        ys = [v[rows] if shuffled else v[:n].copy() for v in outs]
        if not every:  # succeeded: commit the stepped rows
            scatter_rows(compact[slot.cur], table[self._whole.cur], rows)  # type: ignore[index]
        ys[0] = eng.postprocess(ys[0])
        return ys

    def _run_checked(self, rows: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
        """One checked frame per row through the generic call path (left context, fixed
        chunks, resident tables, shapes without a bound plan); outputs as
        :meth:`run_batch` gives them."""
        if self.resident:
            one = [(r, f[None], True) for r, f in zip(rows.tolist(), x)]
            return self._stacked(self._run_resident(one))
        eng = self.engine
        n = len(rows)
        whole = self._whole
        if whole is not None and n == self.capacity and self.context is None:
            # every row steps (rows: a permutation of them): run the rows in place, no
            # gather or scatter; the call's flip makes its new state the rows' state
            ordered = np.array_equal(rows, self._order)
            if not ordered:
                x_rows = np.empty_like(x)
                x_rows[rows] = x
                x = x_rows
            ys = self._rows_first(eng.run(x[:, None], None, whole), n)
            return ys if ordered else [y[rows] for y in ys]
        slot = self._slot(n)
        pad = slot.batch - n  # rows that ride along (copies of the first); dropped after
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            gathered = np.concatenate([rows, np.full(pad, rows[0])])
        else:
            gathered = rows
        slot.gather(self.states, gathered)
        if self.context is not None:
            slot.context = self.context[gathered]
        results = self._rows_first(eng.run(x[:, None], None, slot), n)
        self._commit_slot(slot, rows)
        return results

    def _rows_first(self, outs: list[np.ndarray], n: int) -> list[np.ndarray]:
        """The first ``n`` rows of one-frame outputs, rows first, copied, postprocessed."""
        eng = self.engine
        if any(s.batch_axis is None for s in eng.result_specs):  # shared by every row
            return self._stacked(eng.split(outs, np.ones(n, np.int32), [True] * n))
        ys = [rows_first(o, s)[:n].copy() for o, s in zip(outs, eng.result_specs)]
        ys[0] = eng.postprocess(ys[0])
        return ys

    def _stacked(self, outs: list[Outputs]) -> list[np.ndarray]:
        """Each row's outputs as whole arrays again (per-row routes only)."""
        if isinstance(outs[0], dict):
            return [np.stack([o[s.name] for o in outs]) for s in self.engine.data_outputs]  # type: ignore[index]
        return [np.stack(outs)]  # type: ignore[arg-type]

    def _run_resident(self, items: Sequence[tuple[int, np.ndarray, bool]]) -> list[Outputs]:
        """One call over the whole table; rows not in ``items`` get zero frames."""
        eng = self.engine
        rows = np.array([row for row, _, _ in items])
        counts = np.array([len(chunk) for _, chunk, _ in items], np.int32)
        x = np.zeros((self.capacity, int(counts.max()), *items[0][1].shape[1:]), eng.frames.dtype)
        lengths = np.zeros(self.capacity, np.int32)
        for (row, chunk, _), n in zip(items, counts):
            x[row, :n] = chunk
            lengths[row] = n
        outs = eng.run(x, lengths, self.table)  # flips the table only if the call succeeded
        picked = [
            np.take(o, rows, axis=spec.batch_axis) if spec.batch_axis is not None else o
            for o, spec in zip(outs, eng.data_outputs)
        ]
        return eng.split(picked, counts, [single for _, _, single in items])


def can_be_resident(engine: Engine, strict: bool = False) -> bool:
    """Whether a zero-frame row keeps its state in this model's graph (see module doc)."""
    c = engine.contract
    ours = "edgeseq" in c.producer and c.model.mode in ("native", "unrolled")
    ok = ours and c.lengths is not None and not engine.context and c.model.stateful
    return ok if strict else ok and engine.device.memory != "cpu"
