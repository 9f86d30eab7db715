"""Section 2c: a pool stepping k of its N streams, against a hand-written call over just those.

A server steps only the streams that sent a frame this tick (16 or 64 microphones of 256).
The fair hand-written equivalent keeps every stream's state as numpy arrays in the
graph's layout and, per tick, gathers the k rows (``np.take``), runs one ``session.run``
over them and scatters the new state back. Both contenders step the same cycle of random
subsets (ids in random order, as frames arrive) with the same frames, interleaved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.bench._timing import Budget, interleave

__all__ = ["HandGathered", "partial", "partial_tables", "worst_partial_ratio"]

_SUBSETS = 8  # random subsets per k, cycled call by call


class HandGathered:
    """What a user writes without edgeseq for k of N streams: the state of N streams as
    numpy arrays, gathered, run once and scattered back per call."""

    def __init__(self, path: Path, threads: int, capacity: int) -> None:
        from edgeseq.bench._sections import hand_session

        self.session, c = hand_session(path, threads)
        self.frames = c.frames.name
        self.time_major = (c.frames.batch_axis, c.frames.time_axis) == (1, 0)
        self.lengths = c.lengths
        self.pairs = [(p.input, p.batch_axis) for p in c.states]
        self.outputs = [c.data_outputs()[0].name, *c.state_outputs]
        self.state = [
            np.zeros([capacity if isinstance(d, str) else d for d in p.shape], np.float32)
            for p in c.states
        ]

    def step(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One frame ``x`` ``(k, F)`` for each of rows ``rows``; returns ``y``."""
        feed = {self.frames: x[None] if self.time_major else x[:, None]}
        if self.lengths is not None:
            feed[self.lengths] = np.ones(len(rows), np.int32)
        for (name, axis), state in zip(self.pairs, self.state):
            feed[name] = np.take(state, rows, axis=axis)
        out = self.session.run(self.outputs, feed)
        for (_, axis), state, new in zip(self.pairs, self.state, out[1:]):
            index: list[Any] = [slice(None)] * state.ndim
            index[axis] = rows
            state[tuple(index)] = new
        return out[0]


def partial(
    path: Path, threads: int, budget: Budget, n: int, ks: tuple[int, ...], features: int
) -> dict[str, Any]:
    """``StreamPool.step_rows`` over k of ``n`` open streams against :class:`HandGathered`
    over the same k rows, for each k in ``ks`` (those up to ``n``)."""
    from edgeseq.bench._sections import _timing, unavailable

    try:
        from edgeseq.runtime import StreamPool  # type: ignore[attr-defined]
    except ImportError:
        return {"streams": n, "k": {}, "reason": "no StreamPool in this build"}
    rng = np.random.default_rng(9)
    pool = StreamPool(path, max_streams=n, threads=threads)
    ids = np.array([pool.open() for _ in range(n)])
    hand = HandGathered(path, threads, n)
    calls: dict[str, Callable[[], object]] = {}
    sizes = [k for k in ks if 1 <= k <= n]
    for k in sizes:
        rows = [rng.choice(n, k, replace=False) for _ in range(_SUBSETS)]
        frames = [rng.standard_normal((k, features)).astype(np.float32) for _ in range(_SUBSETS)]
        calls[f"pool_rows@{k}"] = _cycle(lambda r, x: pool.step_rows(ids[r], x), rows, frames)
        calls[f"ort_gathered@{k}"] = _cycle(hand.step, rows, frames)
    stats = interleave(calls, budget) if calls else {}
    out: dict[str, Any] = {"streams": n, "k": {}}
    for k in sizes:
        pool_rec, hand_rec = stats[f"pool_rows@{k}"], stats[f"ort_gathered@{k}"]
        out["k"][str(k)] = {
            "pool_rows": _timing(pool_rec, k),
            "ort_gathered": _timing(hand_rec, k),
        }
    for k in ks:
        if str(k) not in out["k"]:
            out["k"][str(k)] = {"pool_rows": unavailable(f"k = {k} is more than {n} streams")}
    return out


def _cycle(
    step: Callable[[np.ndarray, np.ndarray], object],
    rows: list[np.ndarray],
    frames: list[np.ndarray],
) -> Callable[[], object]:
    """A zero-argument call stepping the next (rows, frames) of the cycle."""
    state = {"i": 0}

    def call() -> object:
        i = state["i"] = (state["i"] + 1) % len(rows)
        return step(rows[i], frames[i])

    return call


def worst_partial_ratio(cell: dict[str, Any], least: int = 16) -> float | str:
    """The largest pool / hand-written median ratio over the measured k >= ``least``."""
    section = cell.get("partial")
    if not section:
        return "not measured in this run"
    ratios = [
        rec["pool_rows"]["median"] / rec["ort_gathered"]["median"]
        for k, rec in section["k"].items()
        if int(k) >= least and rec["pool_rows"].get("available")
    ]
    return max(ratios) if ratios else f"no k >= {least} measured"


def partial_tables(cells: dict[str, Any]) -> list[str]:
    """Markdown lines of section 2c (none when the run did not measure it)."""
    from edgeseq.table import format_table

    measured = {c: d["partial"] for c, d in cells.items() if d.get("partial", {}).get("k")}
    if not measured:
        return []
    first = next(iter(measured.values()))
    ks = [k for k, rec in first["k"].items() if rec["pool_rows"].get("available")]
    out = [
        "",
        f"Stepping k of {first['streams']} open streams × 1 frame (random subsets, ids in "
        "random order): `StreamPool.step_rows` / a hand-written gather, one `session.run` "
        "over the k rows, scatter (median µs per call in brackets, pool / hand-written):",
        "",
    ]
    rows = []
    for cell, section in measured.items():
        row = [cell]
        for k in ks:
            rec = section["k"][k]
            p, h = rec["pool_rows"]["median"], rec["ort_gathered"]["median"]
            row.append(f"{p / h:.2f}× ({p * 1e6:,.0f} / {h * 1e6:,.0f})")
        rows.append(row)
    out.append(format_table(["cell", *(f"k = {k}" for k in ks)], rows, markdown=True))
    return out
