"""Learn what a graph does not declare by running it: layout, shapes, state candidates.

A third-party model often leaves its shapes unsaid: unnamed (``None``) or auto-named dims,
outputs behind ``If``/``Loop`` with no static shape, output dims named differently from
the matching input dims, a frames input with no batch axis (``[T, F]``) or with time first
(``[T, B, F]``). :func:`probe` runs the model a few times with zero state and small random
frames, at batch 1 and 2 and at two frame counts, and reads the answers off the results:

- the **layout**: which axis of the frames input is the batch (rows of a batch-2 call
  give the same outputs as each row alone) and which is time; a fixed axis is features;
- the **shapes** of every output, where its batch and time axes are;
- the **state candidates**: outputs of exactly the shape and dtype of a non-frames input,
  at batch 1 and at batch 2, that do not grow with the frame count;
- the **frame counts** that work (a model may take only one size per call).

The layouts are tried in the order :mod:`._hypotheses` ranks them from the dim names.
Nothing here decides which pairs are state: :mod:`.discover` does, and says how sure it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseq.contract import GraphIO
from edgeseq.runtime._hypotheses import layout_hypotheses

__all__ = ["Layout", "Probe", "ProbeError", "probe"]

Dim = int | str
# frame counts tried for a time axis of unknown size: small first (cheap), then audio sizes
_SIZES = (1, 2, 3, 4, 8, 16, 32, 64, 100, 128, 160, 256, 320, 400, 512, 576, 1024, 1600, 4096)
_EXTRA_SIZES = (16000,)  # tried only to bound the range once a size has worked
_MAX_VALUES = 1 << 16  # values per probe call: frame counts stop where n x frame size passes it


class ProbeError(Exception):
    """The model did not run with any layout the probe tried (internal to discovery)."""


@dataclass(frozen=True)
class Layout:
    """Where the batch and time axes of the frames input are (None: the input has none)."""

    batch_axis: int | None
    time_axis: int | None
    how: str = ""  # why this layout: names, a batch-2 run, ...

    def describe(self) -> str:
        if self.batch_axis is None and self.time_axis is None:
            return "one frame per call, no batch axis"
        if self.batch_axis is None:
            return f"time on axis {self.time_axis}, no batch axis"
        if self.time_axis is None:
            return f"batch on axis {self.batch_axis}, one frame per call (no time axis)"
        major = "time-major" if self.time_axis < self.batch_axis else "batch-first"
        return f"batch on axis {self.batch_axis}, time on axis {self.time_axis} ({major})"


@dataclass
class Probe:
    """What running the model showed; see the module docstring."""

    layout: Layout
    frames_shape: list[Dim]  # the contract's shape for the frames input
    frames_dtype: str
    batch_fixed: bool  # the model runs at batch 1 only
    sizes: list[int]  # frame counts that ran (empty: no time axis)
    tried: list[int]  # frame counts tried
    outputs: dict[str, tuple[list[Dim], str, int | None, int | None]]  # shape, dtype, b, t
    inputs: dict[str, tuple[list[Dim], str, int | None]]  # non-frames inputs: shape, dtype, b
    matches: dict[str, list[str]]  # non-frames input -> outputs of its shape and dtype
    notes: list[str] = field(default_factory=list)
    run_state: Callable[..., Any] | None = None  # (pairs, pieces) -> final states, for checks

    @property
    def fixed_size(self) -> int | None:
        """The frame count per call when exactly one of those tried ran."""
        return self.sizes[0] if len(self.sizes) == 1 else None


class _Runner:
    """Feeds the session: frames of a layout, zero state, the constants given."""

    def __init__(
        self,
        session: Any,
        gin: Sequence[GraphIO],
        frames: str,
        constants: Mapping[str, np.ndarray],
    ) -> None:
        self.session = session
        self.gin = {g.name: g for g in gin}
        self.frames = self.gin[frames]
        self.constants = dict(constants)
        self.others = [g for g in gin if g.name != frames and g.name not in constants]
        self.out_names = [o.name for o in session.get_outputs()]
        self._layout = Layout(0, 1)
        self._rows: dict[tuple, np.ndarray] = {}

    @property
    def layout(self) -> Layout:
        return self._layout

    @layout.setter
    def layout(self, value: Layout) -> None:
        self._layout = value
        self._rows = {}  # rows are shaped by the layout

    def row(self, n: int | None, seed: int) -> np.ndarray:
        """One row of frames (no batch axis) for ``n`` frames, fixed per (n, seed)."""
        key = (n, seed)
        if key not in self._rows:
            shape = []
            for i, d in enumerate(self.frames.shape):
                if i == self.layout.batch_axis:
                    continue
                shape.append(n if i == self.layout.time_axis else (d if isinstance(d, int) else 1))
            rng = np.random.default_rng(seed)
            dtype = np.dtype(self.frames.dtype)
            if dtype.kind in "iu":
                arr = rng.integers(0, 2, size=shape).astype(dtype)
            else:
                arr = (0.1 * rng.standard_normal(shape)).astype(dtype)
            self._rows[key] = arr
        return self._rows[key]

    def state_shape(self, g: GraphIO, batch: int) -> list[int]:
        return [d if isinstance(d, int) else batch for d in g.shape]

    def feed(self, rows: Sequence[np.ndarray], states: Mapping[str, np.ndarray] | None = None):
        b_ax = self.layout.batch_axis
        x = rows[0] if b_ax is None else np.stack(rows, axis=b_ax)
        feed: dict[str, np.ndarray] = {self.frames.name: x, **self.constants}
        for g in self.others:
            if states is not None and g.name in states:
                feed[g.name] = states[g.name]
            else:
                feed[g.name] = np.zeros(self.state_shape(g, len(rows)), np.dtype(g.dtype))
        return feed

    def run(self, rows: Sequence[np.ndarray], states: Mapping[str, np.ndarray] | None = None):
        res = self.session.run(None, self.feed(rows, states))
        return dict(zip(self.out_names, res))

    def first_size(self, sizes: Sequence[int]) -> tuple[int | None, str]:
        last = ""
        per_frame = int(np.prod([d for d in self.row(1, 0).shape if d != 1] or [1]))
        for n in sizes:
            if n * per_frame > _MAX_VALUES:
                break
            try:
                self.run([self.row(n, 0)])
                return n, ""
            except Exception as exc:  # onnxruntime raises its own types
                last = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
        return None, last


def _grown_axis(one: tuple[int, ...], two: tuple[int, ...]) -> int | None:
    """The one axis on which ``two`` has twice the size of ``one`` (1 -> 2 for a batch)."""
    if len(one) != len(two):
        return None
    diff = [i for i, (a, b) in enumerate(zip(one, two)) if a != b]
    if len(diff) == 1 and two[diff[0]] == 2 * one[diff[0]]:
        return diff[0]
    return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind not in "fc":
        return bool(np.array_equal(a, b))
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5 * scale))


def _try_layout(r: _Runner, layout: Layout, sizes: Sequence[int]) -> tuple[str, Any]:
    """('confirmed' | 'weak' | 'no', details) for one layout hypothesis."""
    r.layout = layout
    if layout.time_axis is None:
        n, err = None, ""
        try:
            r.run([r.row(None, 0)])
        except Exception as exc:
            return "no", str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    else:
        n, err = r.first_size(sizes)
        if n is None:
            return "no", err
    if layout.batch_axis is None:
        return "weak", n  # nothing to cross-check: accepted if no batch layout is confirmed
    a, b = r.row(n, 0), r.row(n, 1)
    try:
        pair = r.run([a, b])
    except Exception:
        return "weak", n  # batch 2 refused: fixed batch, or this is not the batch axis
    one, alone = r.run([a]), r.run([b])
    for name, y2 in pair.items():
        ax = _grown_axis(one[name].shape, y2.shape)
        if ax is None or not _close(np.take(y2, [1], axis=ax), alone[name]):
            return "no", n  # a batch-2 call must give every output a second, independent row
    return "confirmed", n


def probe(
    session: Any,
    gin: Sequence[GraphIO],
    frames: str,
    constants: Mapping[str, np.ndarray],
) -> Probe:
    """Run the model to learn its layout and shapes; raise :class:`ProbeError` if it never runs."""
    r = _Runner(session, gin, frames, constants)
    g = r.frames
    weak: list[tuple[Layout, Any]] = []
    chosen: tuple[Layout, Any] | None = None
    errors = []
    for b, t in layout_hypotheses(g.shape):
        layout = Layout(b, t)
        verdict, detail = _try_layout(r, layout, _SIZES)
        if verdict == "confirmed":
            chosen = (Layout(b, t, "rows of a batch-2 call match each row alone"), detail)
            break
        if verdict == "weak":
            weak.append((layout, detail))
        elif isinstance(detail, str) and detail:
            errors.append(detail)
    batch_fixed = False
    if chosen is None:
        if not weak:
            raise ProbeError(
                f"the model ran with no layout of {frames!r} {list(g.shape)} tried"
                + (f" (last error: {errors[-1]})" if errors else "")
            )
        layout, n = weak[0]
        batch_fixed = layout.batch_axis is not None
        how = "the only layout that runs" + (" (at batch 1 only)" if batch_fixed else "")
        chosen = (Layout(layout.batch_axis, layout.time_axis, how), n)
    layout, n1 = chosen
    r.layout = layout
    return _describe(r, layout, n1, batch_fixed)


def _describe(r: _Runner, layout: Layout, n1: int | None, batch_fixed: bool) -> Probe:
    g = r.frames
    notes: list[str] = []
    sizes: list[int] = []
    tried: list[int] = []
    if layout.time_axis is not None:
        per_frame = int(np.prod([d for d in r.row(1, 0).shape if d != 1] or [1]))
        for n in (*_SIZES, *_EXTRA_SIZES):
            if (n in _EXTRA_SIZES and not sizes) or n * per_frame > _MAX_VALUES:
                break
            tried.append(n)
            try:
                r.run([r.row(n, 0)])
                sizes.append(n)
            except Exception:
                pass
    base = r.run([r.row(n1, 0)])
    two = None if batch_fixed or layout.batch_axis is None else r.run([r.row(n1, 0)] * 2)
    n2 = next((n for n in sizes if n != n1), None)
    longer = r.run([r.row(n2, 0)]) if n2 is not None else None

    def sym(d: Any, default: str) -> str:
        return d if isinstance(d, str) and d else default

    frames_shape: list[Dim] = []
    for i, d in enumerate(g.shape):
        if i == layout.batch_axis:
            frames_shape.append(1 if batch_fixed else sym(d, "batch"))
        elif i == layout.time_axis:
            frames_shape.append(sym(d, "time"))
        else:
            frames_shape.append(d if isinstance(d, int) else sym(d, f"{g.name}_dim{i}"))
    outputs: dict[str, tuple[list[Dim], str, int | None, int | None]] = {}
    for name, y in base.items():
        b_ax = _grown_axis(y.shape, two[name].shape) if two is not None else None
        t_ax = None
        if longer is not None:
            diff = [i for i, (a, c) in enumerate(zip(y.shape, longer[name].shape)) if a != c]
            t_ax = diff[0] if len(diff) == 1 and diff[0] != b_ax else None
        shape: list[Dim] = [
            "batch" if i == b_ax else "time" if i == t_ax else int(s) for i, s in enumerate(y.shape)
        ]
        outputs[name] = (shape, y.dtype.name, b_ax, t_ax)
    inputs: dict[str, tuple[list[Dim], str, int | None]] = {}
    matches: dict[str, list[str]] = {}
    for s in r.others:
        s1 = r.state_shape(s, 1)
        unknown = [i for i, d in enumerate(s.shape) if not isinstance(d, int)]
        b_ax = unknown[0] if len(unknown) == 1 and not batch_fixed else None
        shape = ["batch" if i == b_ax else d for i, d in enumerate(s1)]
        inputs[s.name] = (shape, s.dtype, b_ax)
        found = []
        for name, y in base.items():
            if y.dtype.name != s.dtype or list(y.shape) != s1:
                continue
            if two is not None and list(two[name].shape) != r.state_shape(s, 2):
                continue
            if longer is not None and longer[name].shape != y.shape:
                continue  # grows with the frame count: a data output
            found.append(name)
        matches[s.name] = found
    if layout.time_axis is not None and sizes and len(sizes) < len(tried):
        notes.append(f"frame counts that ran: {_ranges(sizes)} of those tried ({_ranges(tried)})")
    return Probe(
        layout=layout,
        frames_shape=frames_shape,
        frames_dtype=g.dtype,
        batch_fixed=batch_fixed,
        sizes=sizes,
        tried=tried,
        outputs=outputs,
        inputs=inputs,
        matches=matches,
        notes=notes,
        run_state=lambda pairs, pieces, context=0, initial=None: _run_pieces(
            r, pairs, pieces, context, initial
        ),
    )


def _run_pieces(
    r: _Runner,
    pairs: Sequence[tuple[str, str]],
    pieces: Sequence[int],
    context: int = 0,
    initial: Sequence[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
    """Run one random stream cut into ``pieces`` new-frame counts, carrying ``pairs``' state
    and ``context`` frames of left context (zeros before the first call).

    The first call starts from ``initial`` (one state per pair, batch 1: the contract's
    initial state, which a stream starts from), else from zeros.
    Returns the final states (in ``pairs`` order) and every call's outputs.
    """
    t = r.layout.time_axis
    assert t is not None
    t_row = t if r.layout.batch_axis is None or t < r.layout.batch_axis else t - 1
    whole = r.row(context + sum(pieces), 2).copy()
    whole[(slice(None),) * t_row + (slice(0, context),)] = 0  # the first call's context
    states: dict[str, np.ndarray] | None = None
    if initial is not None:
        states = {i: s for (i, _), s in zip(pairs, initial)}
    outs = []
    start = context
    for n in pieces:
        x = np.take(whole, range(start - context, start + n), axis=t_row)
        res = r.run([x], states)
        outs.append(res)
        states = {i: res[o] for i, o in pairs}
        start += n
    return [states[i] for i, _ in pairs] if states else [], outs


def _ranges(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)
