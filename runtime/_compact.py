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

__all__ = ["gather_rows", "row_views", "scatter_rows", "state_blocks"]

RowViews = tuple[list[np.ndarray], list[np.ndarray]]  # per buffer set, per view


def state_blocks(
    engine: Engine, batch: int
) -> tuple[tuple[list[np.ndarray], list[np.ndarray]], RowViews] | None:
    """Host memory for a slot's two buffer sets, each set's pairs in one block, and the
    block's rows-first view; None off the host, or when the pairs' rows differ.

    When every pair has one dtype, the same values per row and only unit axes before its
    batch axis (one pair per layer of an LSTM/GRU/RNN: ``(1, batch, hidden)``), a block
    ``(pairs, batch, values)`` holds pair ``i`` contiguously at ``block[i]`` (as the graph
    binds it), and ``block.transpose(1, 0, 2)`` is every pair's rows at once: one gather
    and one scatter per call instead of one per pair.
    """
    pairs = engine.pairs
    if engine.device.memory != "cpu" or not pairs:
        return None
    shapes = [engine.state_shape(p, batch) for p in pairs]
    per_row = {math.prod(s) // batch for s in shapes}
    if (
        len({np.dtype(p.dtype) for p in pairs}) != 1
        or len(per_row) != 1
        or any(
            p.batch_axis is None or any(d != 1 for d in s[: p.batch_axis])
            for p, s in zip(pairs, shapes)
        )
    ):
        return None
    width = per_row.pop()
    sets, views = [], []
    for _ in (0, 1):
        block = np.zeros((len(pairs), batch, width), np.dtype(pairs[0].dtype))
        sets.append([block[i].reshape(s) for i, s in enumerate(shapes)])
        views.append([block.transpose(1, 0, 2)])
    return (sets[0], sets[1]), (views[0], views[1])


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
