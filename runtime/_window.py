"""Fixed windows and graph layouts: where a model's frames differ from ``(batch, time, ...)``.

**Windows.** Many streaming models take an exact number of new samples per call (Silero
VAD: 512 at 16 kHz, with 64 samples of left context). A :class:`Windower` keeps one
stream's samples that do not yet fill a window, so ``step()`` accepts any number of
samples, runs every complete window and keeps the rest for the next call. A window reaches
the model in one of two ways (:class:`WindowPlan`):

- on the **time axis**: the frames input holds raw samples ``(batch, time)``; each window is
  one call of ``context + window`` samples (the engine's left context supplies the first
  ``context``), e.g. ``silero_vad.onnx``;
- as a **frame**: each frame of the input holds ``context + window`` samples (``(time, 576)``
  or ``(batch, 576)``); ``k`` windows become ``k`` frames, overlapping by ``context`` (hop
  ``window``), run in one call when the graph has a time axis, e.g. Silero's sequence model.

**Layouts.** The engine works in ``(batch, time, ...)``; :class:`GraphLayout` moves its
frames into the graph's own layout: time-major ``(time, batch, ...)``, no batch axis
``(time, ...)``, or no time axis ``(batch, ...)`` (one frame per call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeseq.contract import Contract, StatePair, TensorSpec
from edgeseq.errors import ContractError, InputError
from edgeseq.runtime._frames import FrameSpec
from edgeseq.runtime._probe import Probe

__all__ = ["GraphLayout", "WindowPlan", "Windower", "check_cuts", "plan_windows"]


@dataclass(frozen=True)
class WindowPlan:
    """How raw samples are cut for a model that takes fixed windows."""

    window: int  # new samples per window
    context: int  # samples before each window that it also carries
    framed: bool  # True: each window is one frame of context + window values

    @property
    def size(self) -> int:
        """Samples the model sees per window, context included."""
        return self.window + self.context

    def frames(self, samples: np.ndarray) -> np.ndarray:
        """``(batch, context + k * window)`` samples -> ``(batch, k, context + window)``
        frames, each starting ``window`` samples after the last (a copy)."""
        k = (samples.shape[1] - self.context) // self.window
        idx = np.arange(k)[:, None] * self.window + np.arange(self.size)[None, :]  # (k, size)
        return samples[:, idx]


class Windower:
    """One stream's samples that do not fill a window yet (``pending``, 1-D)."""

    __slots__ = ("pending", "window")

    def __init__(self, window: int, dtype: np.dtype) -> None:
        self.window = window
        self.pending = np.zeros(0, dtype)

    def take(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """``(ready, rest, k)``: the ``k`` complete windows of pending + ``samples`` (``k *
        window`` samples) and what is left. Nothing changes until :meth:`commit`."""
        joined = np.concatenate([self.pending, samples]) if len(self.pending) else samples
        k = len(joined) // self.window
        return joined[: k * self.window], joined[k * self.window :].copy(), k

    def commit(self, rest: np.ndarray) -> None:
        self.pending = rest

    def reset(self) -> None:
        self.pending = self.pending[:0]


class GraphLayout:
    """Moves ``(batch, time, *frame)`` arrays into the frames input's layout.

    ``batch_axis``/``time_axis`` are the graph's (None: it has no such axis); batch and time
    always lead, the per-frame axes trail.
    """

    def __init__(self, spec: TensorSpec) -> None:
        self.batch_axis, self.time_axis = spec.batch_axis, spec.time_axis
        self.standard = (self.batch_axis, self.time_axis) == (0, 1)

    def to_graph(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(batch, time, ...)`` as the graph takes it (batch 1 or time 1 where the
        graph has no such axis)."""
        if self.standard:
            return x
        b, t = self.batch_axis, self.time_axis
        if b is None and t is None:
            return x[0, 0]
        if b is None:
            return x[0]  # (time, ...)
        if t is None:
            return x[:, 0]  # (batch, ...)
        return np.swapaxes(x, 0, 1)  # (time, batch, ...)

    def graph_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The graph-layout shape of an engine-layout ``(batch, time, ...)`` shape."""
        b, t = self.batch_axis, self.time_axis
        rest = tuple(shape[2:])
        lead = [(b, shape[0]), (t, shape[1])]
        return tuple(n for ax, n in sorted((a, n) for a, n in lead if a is not None)) + rest


def plan_windows(
    contract: Contract, frames: FrameSpec, context: int, window: int | None
) -> WindowPlan | None:
    """The window plan for a model, or None when it takes any number of frames per call.

    ``window`` comes from the caller or the contract (``model.extra["window"]``). A
    stateful graph with a fixed ``chunk`` and no ``lengths`` input (it cannot mask padding)
    takes windows of ``chunk - context``. Frames of one fixed size ``F`` take windows as
    frames: ``context`` is then ``F - window`` unless given.
    """
    m = contract.model
    recorded = m.extra.get("window")
    if window is None:
        window = recorded
    elif recorded is not None and window != recorded:
        raise InputError(
            f"window={window}: this model's contract records windows of {recorded} new "
            f"samples (what it was exported or stored with); expected that or none, got "
            f"{window}. Drop the window to use the recorded one; for another, store it "
            "once: edgeseq inspect MODEL --window N --write-contract OUT.onnx"
        )
    if window is not None and (not isinstance(window, int) or isinstance(window, bool)):
        raise InputError(f"window must be a positive int of samples, got {window!r}.")
    if window is not None and window < 1:
        raise InputError(f"window must be a positive int of samples, got {window!r}.")
    trailing = frames.trailing
    if window is None:
        if m.chunk and contract.lengths is None and m.stateful and not trailing:
            if m.chunk <= context:
                raise InputError(
                    f"context={context} leaves no room for new samples in this graph's fixed "
                    f"{m.chunk} per call; expected context < {m.chunk}."
                )
            return WindowPlan(m.chunk - context, context, False)
        return None
    if not trailing:  # raw samples on the time axis: one call per window
        if m.chunk and m.chunk != window + context and contract.lengths is None:
            raise InputError(
                f"window={window} with context={context} makes {window + context} samples per "
                f"call; this graph takes exactly {m.chunk}. Pass window={m.chunk - context}."
            )
        return WindowPlan(window, context, False)
    size = trailing[0] if len(trailing) == 1 else None
    if not isinstance(size, int) or frames.is_int:
        raise InputError(
            f"window={window} needs raw samples: frames of shape [T] or of one fixed size "
            f"[{window} + context]; this model's frames are {frames.describe()}."
        )
    if (context and context + window != size) or window > size:
        raise InputError(
            f"window={window} with context={context} makes frames of {window + context} "
            f"samples; the model's frames hold {size}. Expected window + context = {size}, "
            f"e.g. window={size - context if context < size else size}."
        )
    return WindowPlan(window, size - window, True)


def check_cuts(
    pr: Probe,
    pairs: Sequence[StatePair],
    outputs: Sequence[TensorSpec],
    context: int,
    initial: Sequence[np.ndarray] | None = None,
) -> None:
    """Refuse a raw-sample model whose results depend on how its input is cut.

    A model whose outputs have no time axis sums up each call's samples; if one call of
    ``2n`` samples ends in another state than two calls of ``n`` (with ``context`` samples
    carried), it was trained on a fixed number per call, which only its author knows.
    Both start from ``initial`` (the contract's initial state, one per pair), else zeros.
    """
    lay = pr.layout
    if lay.time_axis is None or not pr.sizes or any(o.time_axis is not None for o in outputs):
        return
    if len(pr.frames_shape) - (lay.batch_axis is not None) > 1 or not pairs:
        return  # frames with features: any count is a sequence of frames
    n = max(pr.sizes[0] - context, 1)
    names = [(p.input, p.output) for p in pairs]
    try:
        whole, _ = pr.run_state(names, [2 * n], context, initial)
        cut, _ = pr.run_state(names, [n, n], context, initial)
    except Exception:
        return  # inconclusive: one of the sizes does not run
    diff = max(float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(whole, cut))
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0 for a in whole) or 1.0
    if diff <= 1e-3 * scale:
        return
    ran = f"{pr.sizes[0]} to {pr.sizes[-1]}" if len(pr.sizes) > 1 else str(pr.sizes[0])
    raise ContractError(
        f"this model's state depends on how its samples are cut: {2 * n} samples in one call "
        f"and two calls of {n} (context={context}) end {diff:.3g} apart, so it expects a "
        f"fixed number of new samples per call; got no window. Pass window=N (and context=) "
        f"as the model's documentation gives them, or the context= that makes cuts exact "
        f"(calls of {ran} samples ran)."
    )
