"""Why a model cannot stream, said layer by layer: the chunked-parity probe turned into advice.

:func:`trace_modules` runs the adapted model whole and in chunks with a hook on every
module and tells, per module, whether its input and its output agree between the two.
The first module (in call order) whose input agrees but whose output differs is where
streaming breaks; :func:`dependence` then probes that module alone on prefixes and
windows of its own input, and says which of two things it does:

- it **looks into the future**: its output at ``t`` changes when later frames are added
  (a centered convolution, attention, a norm over time). No state can fix that; the way
  out is ``offline`` (whole sequences) or making it causal;
- it **keeps more past than its state carries**: it is causal, but its output at ``t``
  needs frames before the call (a moving window, a running mean). It names how many, i.e.
  the state it would need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["ModuleTrace", "dependence", "join", "sentence", "trace_modules"]

Run = Callable[
    [torch.Tensor, list[torch.Tensor]], tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]
]


def join(parts: Sequence[torch.Tensor], whole: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Chunk outputs joined like the whole-sequence one: along its time axis, else the last.

    Returns a tensor of ``whole``'s shape, or raises ValueError when none fits.
    """
    ax = time_axis(parts, whole, sizes)
    if ax is not None:
        return torch.cat(list(parts), dim=ax)
    if parts[-1].shape == whole.shape:  # no time axis: a call returns its latest value
        return parts[-1]
    raise ValueError("the output's shape does not follow the number of frames")


def time_axis(parts: Sequence[torch.Tensor], whole: torch.Tensor, sizes: list[int]) -> int | None:
    """The axis along which ``parts`` (one per chunk of ``sizes`` frames) make ``whole``."""
    total = sum(sizes)
    for ax in range(whole.dim()):
        if whole.shape[ax] != total or len(parts) != len(sizes):
            continue
        if all(
            p.dim() == whole.dim()
            and p.shape[ax] == n
            and all(p.shape[a] == whole.shape[a] for a in range(p.dim()) if a != ax)
            for p, n in zip(parts, sizes)
        ):
            return ax
    return None


def differs(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| relative to the scale of ``b``; 0 when equal within float32 noise."""
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.is_floating_point:
        err = float((a - b).abs().max()) if a.numel() else 0.0
        return 0.0 if err <= 1e-5 + 1e-4 * float(b.abs().max() if b.numel() else 0) else err
    return 0.0 if torch.equal(a, b) else float("inf")


def _first(v: Any) -> torch.Tensor | None:
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, (tuple, list)):
        return next((t for t in v if isinstance(t, torch.Tensor)), None)
    return None


@dataclass
class ModuleTrace:
    """One module over a whole run and a chunked run: (input, output) per call."""

    name: str
    kind: str
    whole: list[tuple[torch.Tensor | None, torch.Tensor | None]] = field(default_factory=list)
    chunked: list[tuple[torch.Tensor | None, torch.Tensor | None]] = field(default_factory=list)

    def agrees(self, which: int, sizes: list[int]) -> bool | None:
        """Whether input (0) or output (1) agree; None when the calls cannot be lined up."""
        ref = [r[which] for r in self.whole]
        got = [r[which] for r in self.chunked]
        if any(t is None for t in ref + got):
            return None
        try:
            if len(ref) == 1 and len(got) == len(sizes):  # once per call: join along time
                return not differs(join(got, ref[0], sizes), ref[0])  # type: ignore[arg-type]
            if len(ref) == len(got):  # once per frame (inside a time loop): call by call
                return not any(differs(g, r) for g, r in zip(got, ref))  # type: ignore[arg-type]
        except ValueError:
            return False
        return None


def trace_modules(
    inner: nn.Module,
    skip: Sequence[str],
    run: Run,
    seq: torch.Tensor,
    init_states: list[torch.Tensor],
    size: int,
) -> list[ModuleTrace]:
    """Every module of ``inner`` (but those under ``skip`` prefixes), in first-call order,
    with its inputs and outputs over ``seq`` run whole and in chunks of ``size``."""
    traces: dict[str, ModuleTrace] = {}
    phase = {"key": "whole"}

    def hook(name: str, kind: str):
        def fn(_mod: nn.Module, args, out) -> None:
            trace = traces.setdefault(name, ModuleTrace(name, kind))
            getattr(trace, phase["key"]).append((_first(args), _first(out)))

        return fn

    prefixes = tuple(f"{s}." for s in skip)
    handles = []
    for name, mod in inner.named_modules():
        if name and not name.startswith(prefixes):
            wrapped = getattr(mod, "_modules", {}).get("module") if name in skip else None
            kind = type(wrapped if wrapped is not None else mod).__name__
            handles.append(mod.register_forward_hook(hook(name, kind)))
    try:
        with torch.no_grad():
            run(seq, init_states)
            phase["key"] = "chunked"
            states = init_states
            for start in range(0, seq.shape[1], size):
                states = run(seq[:, start : start + size], states)[1]
    finally:
        for h in handles:
            h.remove()
    return list(traces.values())


@dataclass(frozen=True)
class Dependence:
    """How a computation's output at time t depends on its input frames."""

    kind: str  # "future", "past", "pools", "causal" (past not measured) or "unknown"
    frames: int | None = None  # how many (None: all of them)


def dependence(
    call: Callable[..., torch.Tensor],
    u: torch.Tensor,
    u_axis: int = 1,
    v_axis: int | None = 1,
    past: bool = True,
    spans: bool = False,
) -> Dependence:
    """Probe ``call`` on prefixes and windows of ``u`` (time on ``u_axis``; the output's on
    ``v_axis``, None if it has none).

    Prefixes tell whether an output needs later frames (and how many); windows ending at
    a frame tell how many earlier frames it needs (skipped without ``past``). With
    ``spans``, ``call(window, start)`` also gets the window's first frame in ``u`` (to cut
    a mask over time alike).
    """
    if v_axis is None:
        return Dependence("pools")

    def f(w: torch.Tensor, start: int = 0) -> torch.Tensor:  # time on axis 1, in and out
        w = w.movedim(1, u_axis)
        return (call(w, start) if spans else call(w)).movedim(v_axis, 1)

    u = u.movedim(u_axis, 1)
    try:
        with torch.no_grad():
            v = f(u)
            frames = u.shape[1]
            if v.dim() < 2 or v.shape[0] != u.shape[0] or v.shape[1] != frames:
                return Dependence("pools")  # no time axis left: a reduction over time
            m = frames // 2

            def head(n: int) -> bool:  # do the first m outputs agree when given n frames?
                return not differs(f(u[:, :n])[:, :m], v[:, :m])

            if not head(m):
                ahead = next((j for j in range(1, frames - m + 1) if head(m + j)), None)
                return Dependence("future", None if ahead == frames - m else ahead)
            if not past:
                return Dependence("causal")
            for w in range(1, m):
                if not differs(f(u[:, m - w : m], m - w)[:, -1], v[:, m - 1]):
                    return Dependence("past", w - 1)
            return Dependence("past", None)
    except Exception:
        return Dependence("unknown")


def sentence(dep: Dependence) -> str:
    """What :func:`dependence` found, and the way out, for an error message."""
    if dep.kind == "pools":
        return (
            "it reduces over time (its output has no time axis), so every output depends "
            "on the whole sequence, later frames included: it looks into the future. "
            "Export with offline=True (CLI: --offline), or pool causally (a running value "
            "carried in forward(x, state))."
        )
    if dep.kind == "future":
        ahead = (
            "every later frame"
            if dep.frames is None
            else (f"{dep.frames} later frame{'s' if dep.frames != 1 else ''}")
        )
        return (
            f"it looks into the future: its output at time t depends on {ahead} "
            "(non-causal; no state can carry that). Export with offline=True (CLI: "
            "--offline; whole sequence per call), or make it causal."
        )
    if dep.kind == "past":
        if dep.frames is None:
            return (
                "it is causal but keeps more past than its state carries: its output at "
                "time t depends on all earlier frames (a running sum, mean or norm over "
                "time, or attention over the past?). Carry what it accumulates yourself: "
                "forward(x, state=None) -> (y, state)."
            )
        n = dep.frames
        return (
            f"it is causal but keeps more past than its state carries: its output at time "
            f"t depends on the {n} frame{'s' if n != 1 else ''} before t, so it would need "
            f"them as state (a cache of {n} frame{'s' if n != 1 else ''}). Write it as a "
            "causal nn.Conv1d (edgeseq carries conv caches) or carry them yourself: "
            "forward(x, state=None) -> (y, state)."
        )
    if dep.kind == "causal":
        return (
            "it is causal but keeps more past than the state edgeseq carries (state the "
            "forward builds itself, e.g. a previous output fed back, a running value, or "
            "padding and a window over time in forward's own code, such as F.pad before a "
            "pooling layer). Carry it yourself: forward(x, state=None) -> (y, state), or "
            "use a causal nn.Conv1d, whose past edgeseq carries."
        )
    return "it mixes frames across time."
