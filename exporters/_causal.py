"""The chunked-parity check that decides whether a model can stream.

Streaming feeds a sequence in pieces and carries only the streamed modules' state
(recurrent layers, cells, conv caches, an explicit state) from one call to the next.
That gives the whole-sequence result only if every output at time ``t`` depends on
frames ``<= t`` through that state alone. Pooling, attention or a
non-causal convolution over time break it; so does anything else that mixes frames
outside the recurrent layers. :func:`check_streamable` runs the adapted model in PyTorch
on a probe sequence whole and in chunks, and refuses it when the two disagree, naming the
first module whose output differs and saying (``_teach.py``) whether it looks into the
future or keeps more past than its state carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from edgeseq.errors import ExportError
from edgeseq.exporters._adapter import StreamAdapter
from edgeseq.exporters._proxy import probe_sequence
from edgeseq.exporters._teach import (
    Dependence,
    ModuleTrace,
    dependence,
    differs,
    join,
    sentence,
    time_axis,
    trace_modules,
)

__all__ = [
    "check_ragged",
    "check_streamable",
    "culprit_sentence",
    "first_culprit",
    "probe_sequence",
]

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
    difference, the first module (in call order) whose output differs and whether it
    looks into the future or keeps more past than its state carries.
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
                    joined = join([p[i] for p in pieces], whole[i], sizes)
                    err = differs(joined, whole[i])
                except ValueError:
                    err = float("inf")
                if err:
                    culprit = culprit_sentence(adapter, run, seq, init_states, size, i)
                    raise ExportError(
                        f"the model cannot stream: output {name!r} fed in chunks of {size} "
                        f"frame(s) differs from the whole sequence by {err:.3g}. {culprit}"
                    )


def culprit_sentence(
    adapter: StreamAdapter,
    run: Run,
    seq: torch.Tensor,
    init_states: list[torch.Tensor],
    size: int,
    output: int,
) -> str:
    """Name the first module whose output differs between chunked and whole calls, and say
    whether it looks into the future or keeps more past than its state carries."""
    culprit = first_culprit(adapter, run, seq, init_states, size)
    if culprit is not None:
        name, kind, dep, module_itself = culprit
        if module_itself:
            return f"The first module whose output differs is {name!r} ({kind}): {sentence(dep)}"
        where = f"before {name!r} ({kind}), whose input already differs"
    else:
        where = "after the last module"
    # code in forward(): only the model's own outputs can be probed
    dep = dependence(
        lambda u: adapter.run_plain(u)[0][output], probe_sequence(seq, 24, seed=3), past=False
    )
    return f"The cause is code in forward() {where}: {sentence(dep)}"


def first_culprit(
    adapter: StreamAdapter,
    run: Run,
    seq: torch.Tensor,
    init_states: list[torch.Tensor],
    size: int,
) -> tuple[str, str, Dependence, bool] | None:
    """``(name, type, dependence, whether the module itself is the cause)`` of the first
    module (in call order) whose output differs between chunked and whole calls."""
    skip = [p.path for p in adapter.proxies]  # the layers inside proxies are the proxy's
    traces = trace_modules(adapter.inner, skip, run, seq, init_states, size)
    frames = seq.shape[1]
    sizes = [min(size, frames - s) for s in range(0, frames, size)]
    for t in traces:
        if t.agrees(1, sizes) is not False:
            continue
        if not t.agrees(0, sizes):
            return t.name, t.kind, Dependence("unknown"), False
        return t.name, t.kind, _module_dependence(adapter, t, sizes, seq), True
    return None


def _module_dependence(
    adapter: StreamAdapter, trace: ModuleTrace, sizes: list[int], seq: torch.Tensor
) -> Dependence:
    """Probe one module alone on its own input from a longer whole-sequence run."""
    if len(trace.whole) != 1:
        return Dependence("unknown")  # called per frame: no time axis of its own
    u_parts = [c[0] for c in trace.chunked]
    v_parts = [c[1] for c in trace.chunked]
    u_ax = time_axis(u_parts, trace.whole[0][0], sizes)  # type: ignore[arg-type]
    v_ax = time_axis(v_parts, trace.whole[0][1], sizes)  # type: ignore[arg-type]
    if u_ax is None:
        return Dependence("unknown")
    module = adapter.inner.get_submodule(trace.name)
    longer: list[tuple[tuple, dict]] = []
    handle = module.register_forward_hook(
        lambda _m, a, kw, _o: longer.append((a, kw)), with_kwargs=True
    )
    try:
        adapter.run_plain(probe_sequence(seq, 24, seed=3))
    finally:
        handle.remove()
    if not longer or not longer[0][0] or not isinstance(longer[0][0][0], torch.Tensor):
        return Dependence("unknown")
    args, kwargs = longer[0]
    u0 = args[0]
    full = u0.shape[u_ax]
    # every argument that is the same sequence (q, k, v of self-attention) is cut alike
    same = [isinstance(a, torch.Tensor) and a.shape == u0.shape for a in args]

    def cut(a: Any, start: int, n: int) -> Any:
        """A mask or other tensor over time (e.g. an attention mask (T, T)) cut alike."""
        if not isinstance(a, torch.Tensor):
            return a
        for ax, size in enumerate(a.shape):
            if size == full:
                a = a.narrow(ax, start, n)
        return a

    def call(u: torch.Tensor, start: int) -> torch.Tensor:
        adapter.reset_proxies()  # a module holding proxies starts from their initial state
        n = u.shape[u_ax]
        out = module(
            *[u if s else cut(a, start, n) for a, s in zip(args, same)],
            **{k: cut(v, start, n) for k, v in kwargs.items()},
        )
        return out[0] if isinstance(out, (tuple, list)) else out

    return dependence(call, u0, u_ax, v_ax, spans=True)


def check_ragged(
    adapter: StreamAdapter,
    x: torch.Tensor,
    init_states: list[torch.Tensor],
    labels: Sequence[str],
    axes: Sequence[int],
    frames: int,
    idle_kept: bool = False,
) -> None:
    """Raise :class:`ExportError` if padding after a row's last frame changes its state.

    A pool steps streams with different frame counts in one call, and a fixed-chunk graph
    pads a short call, so each row's state must stop at its last valid frame (``lengths``).
    Rows of ``frames`` frames with valid counts ``frames``, fewer and 0 in one batched call
    must end with the states each row reaches alone. ``labels`` name the states;
    ``idle_kept``: the graph keeps every state of a row without frames (native graphs).
    """
    seq = probe_sequence(torch.cat([x] * 3, dim=0)[:3], frames, seed=7)
    lengths = torch.tensor([frames, max(1, frames - 2), 0], dtype=torch.int32)
    saved = adapter.takes_lengths
    adapter.takes_lengths = True  # eagerly every proxy masks; native layers stop per row
    try:
        with torch.no_grad():
            one = [s.narrow(ax, 0, 1) for s, ax in zip(init_states, axes)]  # batch 1
            start = [torch.cat([s] * 3, dim=ax) for s, ax in zip(one, axes)]
            out = adapter(seq, lengths, *start)
            got = out[adapter.n_outputs or 0 :]
            for r, n in enumerate(lengths.tolist()):
                if n == 0 and idle_kept:
                    continue
                want = list(one)
                if n:
                    alone = adapter(seq[r : r + 1, :n], lengths[r : r + 1], *one)
                    want = list(alone[adapter.n_outputs or 0 :])
                for label, g, w, ax in zip(labels, got, want, axes):
                    err = differs(g.narrow(ax, r, 1), w)
                    if err:
                        raise ExportError(
                            f"the model cannot stream in batched or padded calls: state "
                            f"{label!r} changes on the padding after a row's last frame (a "
                            f"row of {n} valid frame(s) in a call of {frames} ends {err:.3g} "
                            "away from the same row run alone). StreamPool pads streams "
                            "with fewer frames and fixed-chunk graphs pad short calls, so it "
                            "would be silently wrong. Carry only what recurrent layers, "
                            "cells and convolutions keep (they stop at a row's last frame), "
                            "or compute the state from it."
                        )
    finally:
        adapter.takes_lengths = saved
