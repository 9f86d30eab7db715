"""The chunked-parity check that decides whether a model can stream.

Streaming feeds a sequence in pieces and carries only the recurrent layers' state from
one call to the next. That gives the whole-sequence result only if every output at time
``t`` depends on frames ``<= t`` through that state alone. Pooling, attention or a
non-causal convolution over time break it; so does anything else that mixes frames
outside the recurrent layers. :func:`check_streamable` runs the adapted model in PyTorch
on a probe sequence whole and in chunks, and refuses it, naming the first module whose
output differs, when the two disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters._adapter import StreamAdapter
from edgeseq.exporters._proxy import probe_sequence

__all__ = ["check_streamable", "probe_sequence"]

# run(x, states) -> (outputs, final states) for x (batch, time, ...)
Run = Callable[
    [torch.Tensor, list[torch.Tensor]], tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]
]


def _chunked(run: Run, x: torch.Tensor, states: list[torch.Tensor], size: int):
    """Run ``x`` in chunks of ``size`` frames, carrying state; outputs per chunk."""
    pieces = []
    for start in range(0, x.shape[1], size):
        outs, states = run(x[:, start : start + size], states)
        pieces.append(outs)
    return pieces


def _join(parts: Sequence[torch.Tensor], whole: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Chunk outputs joined like the whole-sequence one: along its time axis, else the last.

    Returns a tensor of ``whole``'s shape, or raises ValueError when none fits.
    """
    total = sum(sizes)
    for ax in range(whole.dim()):
        if whole.shape[ax] != total:
            continue
        fits = all(
            p.dim() == whole.dim()
            and p.shape[ax] == n
            and all(p.shape[a] == whole.shape[a] for a in range(p.dim()) if a != ax)
            for p, n in zip(parts, sizes)
        )
        if fits:
            return torch.cat(list(parts), dim=ax)
    if parts[-1].shape == whole.shape:  # no time axis: a call returns its latest value
        return parts[-1]
    raise ValueError("the output's shape does not follow the number of frames")


def _differs(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| relative to the scale of ``b``; 0 when equal within float32 noise."""
    if a.dtype.is_floating_point:
        err = float((a - b).abs().max()) if a.numel() else 0.0
        return 0.0 if err <= 1e-5 + 1e-4 * float(b.abs().max() if b.numel() else 0) else err
    return 0.0 if torch.equal(a, b) else float("inf")


def check_streamable(
    adapter: StreamAdapter,
    run: Run,
    x: torch.Tensor,
    init_states: list[torch.Tensor],
    out_names: Sequence[str],
    chunk_sizes: Sequence[int] = (1, 4),
    frames: int = 10,
) -> None:
    """Raise :class:`ExportError` if chunked calls disagree with one whole-sequence call.

    ``run(x, states)`` calls the adapted model; ``init_states`` are its initial states for
    ``x``'s batch. The error names the output, the chunk size, the size of the
    difference and the first module (in call order) whose output differs.
    """
    seq = probe_sequence(x, frames)
    with torch.no_grad():
        whole, _ = run(seq, init_states)
        for size in chunk_sizes:
            try:
                pieces = _chunked(run, seq, init_states, size)
            except Exception as exc:
                raise ExportError(
                    f"the model cannot stream: its forward fails on a chunk of {size} frame(s) "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                    "A streaming model must accept any number of frames per call. Export with "
                    "offline=True (CLI: --offline) to run whole sequences only."
                ) from None
            sizes = [min(size, frames - s) for s in range(0, frames, size)]
            for i, name in enumerate(out_names):
                try:
                    joined = _join([p[i] for p in pieces], whole[i], sizes)
                    err = _differs(joined, whole[i])
                except ValueError:
                    err = float("inf")
                if err:
                    culprit = _localise(adapter, run, seq, init_states, size)
                    raise ExportError(
                        f"the model cannot stream: output {name!r} fed in chunks of {size} "
                        f"frame(s) differs from the whole sequence by {err:.3g}, so its output "
                        f"at time t depends on later frames or on more than the recurrent "
                        f"state carries. {culprit} Export with offline=True (CLI: --offline; "
                        "whole sequence per call, no state carried), or make it causal."
                    )


def _localise(
    adapter: StreamAdapter,
    run: Run,
    seq: torch.Tensor,
    init_states: list[torch.Tensor],
    size: int,
) -> str:
    """Name the first module whose output differs between chunked and whole calls."""
    inner = adapter.inner
    skip = tuple(f"{p.info.path}." for p in adapter.proxies)  # the layers inside proxies
    records: dict[str, list[tuple[torch.Tensor | None, torch.Tensor | None]]] = {}
    order: list[str] = []

    def first_tensor(v) -> torch.Tensor | None:
        if isinstance(v, torch.Tensor):
            return v
        if isinstance(v, (tuple, list)):
            return next((t for t in v if isinstance(t, torch.Tensor)), None)
        return None

    def hook(name: str):
        def fn(_mod: nn.Module, args, out) -> None:
            if name not in records:
                records[name] = []
                order.append(name)
            records[name].append((first_tensor(args), first_tensor(out)))

        return fn

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in inner.named_modules()
        if n and not n.startswith(skip)
    ]
    try:
        with torch.no_grad():
            run(seq, init_states)
            whole = {n: r[0] for n, r in records.items()}
            records.clear()
            _chunked(run, seq, init_states, size)
    finally:
        for h in handles:
            h.remove()
    frames = seq.shape[1]
    sizes = [min(size, frames - s) for s in range(0, frames, size)]

    def agrees(name: str, which: int) -> bool:
        ref = whole[name][which]
        parts = [r[which] for r in records.get(name, [])]
        if ref is None or len(parts) != len(sizes) or any(p is None for p in parts):
            return ref is None
        try:
            return not _differs(_join(parts, ref, sizes), ref)  # type: ignore[arg-type]
        except ValueError:
            return False

    for name in order:
        if name in whole and not agrees(name, 1):
            kind = type(inner.get_submodule(name)).__name__
            if agrees(name, 0):
                return (
                    f"The first module whose output differs is {name!r} ({kind}): it mixes "
                    "frames across time."
                )
            return (
                f"The first module whose output differs is {name!r} ({kind}), but its input "
                "already differs: the cause is code in forward() before it (e.g. a mean, "
                "pooling or attention over time)."
            )
    return "No submodule's output differs: the cause is code in forward() after the last module."
