"""Moving some of a pool's state rows into a compact batch and back, on host memory.

A pool that steps ``k`` of its ``N`` streams runs one call over a slot of ``k`` rows
(rounded up to a bucket size, see :func:`._rows.bucket`): the ``k`` rows are gathered from
the table into the slot, the slot runs, and its new rows are scattered back. Each state
pair is laid out as the graph takes it (e.g. ``(layers, rows, hidden)``), so this module
keeps, per slot and per buffer set, a view of every pair with its rows first (no copy):
the gather is then one ``np.take`` along the first axis into the slot's buffer, and the
scatter one indexed assignment, per pair, with no per-call axis bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgeseq.runtime._buffers import StateSlot
    from edgeseq.runtime._engine import Engine

__all__ = ["Scratch", "gather_rows", "row_views", "scatter_rows", "scratch_blocks", "state_blocks"]

RowViews = tuple[list[np.ndarray], list[np.ndarray]]  # per buffer set, per view


Scratch = tuple[np.ndarray, np.ndarray]  # per buffer set, one block (pairs, rows, values)


def _layout(engine: Engine, batch: int) -> tuple[list[list[int]], int, np.dtype] | None:
    """The pairs' shapes at ``batch`` rows, values per row and dtype, when one block can
    hold them (see :func:`state_blocks`); None otherwise."""
    pairs = engine.pairs
    if engine.device.memory != "cpu" or not pairs:
        return None
    shapes = [engine.state_shape(p, batch) for p in pairs]
    per_row = {math.prod(s) // batch for s in shapes}
    if len({np.dtype(p.dtype) for p in pairs}) != 1 or len(per_row) != 1:
        return None
    for p, s in zip(pairs, shapes):
        if p.batch_axis is None or any(d != 1 for d in s[: p.batch_axis]):
            return None
    return shapes, per_row.pop(), np.dtype(pairs[0].dtype)


def scratch_blocks(engine: Engine, rows: int) -> Scratch | None:
    """Two blocks that every compact slot of up to ``rows`` rows can share (its pairs are
    views of their first rows): a pool's compact calls each gather their rows afresh and
    scatter them back before the next call, so slots of every batch size can be kept
    bound with one table's worth of memory. None when the pairs do not fit one block."""
    layout = _layout(engine, rows)
    if layout is None:
        return None
    _, width, dtype = layout
    return np.zeros((len(engine.pairs), rows, width), dtype), np.zeros(
        (len(engine.pairs), rows, width), dtype
    )


def state_blocks(
    engine: Engine, batch: int, scratch: Scratch | None = None
) -> tuple[tuple[list[np.ndarray], list[np.ndarray]], RowViews] | None:
    """Host memory for a slot's two buffer sets, each set's pairs in one block (its own,
    or the first ``batch`` rows of ``scratch``'s), and the block's rows-first view; None
    off the host, or when the pairs' rows differ.

    When every pair has one dtype, the same values per row and only unit axes before its
    batch axis (one pair per layer of an LSTM/GRU/RNN: ``(1, batch, hidden)``), a block
    ``(pairs, rows, values)`` holds pair ``i`` contiguously at ``block[i, :batch]`` (as the
    graph binds it), and ``block[:, :batch].transpose(1, 0, 2)`` is every pair's rows at
    once: one gather and one scatter per call instead of one per pair.
    """
    layout = _layout(engine, batch)
    if layout is None:
        return None
    shapes = layout[0]
    if scratch is None:
        scratch = scratch_blocks(engine, batch)
    sets = tuple([b[i, :batch].reshape(s) for i, s in enumerate(shapes)] for b in scratch)  # type: ignore[union-attr]
    views = tuple([b[:, :batch].transpose(1, 0, 2)] for b in scratch)  # type: ignore[union-attr]
    return sets, views  # type: ignore[return-value]


def row_views(slot: StateSlot) -> RowViews | None:
    """Per buffer set (the slot's ping-pong parity), its state as rows-first views: the
    block's (see :func:`state_blocks`), else one view per pair; None off the host or for a
    pair without a batch axis. Built once per slot."""
    views = slot.row_views
    if views is None:
        pairs = slot.engine.pairs
        if any(p.batch_axis is None for p in pairs) or any(
            b.host is None for s in slot.sets for b in s
        ):
            return None
        views = slot.row_views = tuple(  # type: ignore[assignment]
            [np.moveaxis(b.host, p.batch_axis, 0) for b, p in zip(bufs, pairs)]  # type: ignore[arg-type]
            for bufs in slot.sets
        )
    return views


def gather_rows(table: Sequence[np.ndarray], into: Sequence[np.ndarray], rows: np.ndarray) -> None:
    """Copy ``table``'s rows ``rows`` (distinct, in range) into the first ``len(rows)`` rows
    of ``into`` (rows-first views as :func:`row_views` gives them)."""
    n = len(rows)
    for src, dst in zip(table, into):
        if src.flags.c_contiguous:  # np.take writes straight into dst ("clip": unbuffered)
            np.take(src, rows, axis=0, out=dst[:n], mode="clip")
        else:  # a block's strided view: indexing then one copy measured faster
            dst[:n] = src[rows]


def scatter_rows(
    compact: Sequence[np.ndarray], table: Sequence[np.ndarray], rows: np.ndarray
) -> None:
    """Write the first ``len(rows)`` rows of ``compact`` back to ``table``'s rows ``rows``."""
    n = len(rows)
    for src, dst in zip(compact, table):
        dst[rows] = src[:n]
