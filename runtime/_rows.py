"""Many streams' state as rows of preallocated arrays, and one batched call over any of them.

Each state pair has one array of ``capacity`` rows on its batch axis (e.g.
``(layers, capacity, hidden)``); left context has ``(capacity, N, ...)``. A batched call
gathers the rows it needs into a :class:`StateSlot`, runs the shared :class:`Engine`
once, and scatters the new rows back only after every call of the step succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeseq.runtime._buffers import StateSlot
from edgeseq.runtime._engine import Engine, Outputs

__all__ = ["RowStore"]


class RowStore:
    """State rows of up to ``capacity`` streams of one engine."""

    def __init__(self, engine: Engine, capacity: int) -> None:
        self.engine = engine
        self.states = engine.initial(capacity)  # per pair, capacity rows on batch_axis
        self.context = engine.initial_context(capacity)  # (capacity, N, ...) or None
        self._init = engine.initial(1)
        self._slots: dict[int, StateSlot] = {}

    def write(self, row: int, states: Sequence[np.ndarray] | None = None, ctx: Any = 0) -> None:
        """Set one row: batch-1 ``states`` (default: the initial state) and context ``(N, ...)``."""
        for store, arr, p in zip(self.states, states or self._init, self.engine.pairs):
            np.moveaxis(store, p.batch_axis, 0)[row] = np.moveaxis(arr, p.batch_axis, 0)[0]
        if self.context is not None:
            self.context[row] = ctx

    def read(self, row: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """One row's states with batch 1 by state input name, and context ``(1, N, ...)``."""
        states = {
            p.input: np.take(s, [row], axis=p.batch_axis)
            for s, p in zip(self.states, self.engine.pairs)
        }
        return states, None if self.context is None else self.context[row : row + 1].copy()

    def _slot(self, batch: int) -> StateSlot:
        slot = self._slots.get(batch)
        if slot is None:
            slot = self._slots[batch] = self.engine.slot(batch)
        return slot

    def run(self, items: Sequence[tuple[int, np.ndarray, bool]]) -> list[Outputs]:
        """Run ``(row, checked chunk [T, ...], single)`` items; return each one's outputs.

        Rows of different frame counts share one call through the ``lengths`` input; a
        model without one gets one call per frame count. Rows are written back only after
        every call succeeded, so a failure changes no row.
        """
        eng = self.engine
        groups: dict[tuple, list[int]] = {}  # items that can share one call
        for i, (_, chunk, _) in enumerate(items):
            key = chunk.shape[1:] if eng.lengths_name else chunk.shape
            groups.setdefault(key, []).append(i)
        results: list[Outputs] = [None] * len(items)  # type: ignore[list-item]
        updates = []
        for members in groups.values():
            chunks = [items[i][1] for i in members]
            counts = np.array([len(c) for c in chunks], np.int32)
            total = int(counts.max())
            if np.all(counts == total):
                x = np.stack(chunks)  # (batch, T, ...)
            else:
                x = np.zeros((len(chunks), total, *chunks[0].shape[1:]), eng.frames.dtype)
                for r, c in enumerate(chunks):
                    x[r, : len(c)] = c  # zero-padded after each row's frames
            rows = np.array([items[i][0] for i in members])
            slot = self._slot(len(members))
            slot.gather(self.states, rows)
            if self.context is not None:
                slot.context = self.context[rows]
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
            for store, arr, p in zip(self.states, states, eng.pairs):
                np.moveaxis(store, p.batch_axis, 0)[rows] = np.moveaxis(arr, p.batch_axis, 0)
            if ctx is not None:
                self.context[rows] = ctx  # type: ignore[index]
        return results
