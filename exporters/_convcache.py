"""Causal convolutions over time as streamed modules: a cache of past input frames as state.

A convolution over time computes, on the whole sequence, ``conv([zeros L, frames, zeros R])``
where ``L`` and ``R`` are the zeros on each side: the user's own ``F.pad(x, (L, 0))``
plus the layer's ``padding``. Streaming replaces the ``L`` leading zeros of each call by
the last ``L`` input frames of the calls before (a cache, one more state pair), exactly as
cache-aware streaming ASR does; everything else is unchanged, so a chunk's outputs equal
the whole sequence's. The conv is causal when ``L >= (kernel - 1) * dilation``: with less,
its output at time ``t`` reads frames after ``t`` and it is refused, naming the frames.

The cache keeps the last ``L`` *valid* frames of each row (a gather at ``lengths``), so
batched calls with different frame counts and padded fixed-chunk graphs stay exact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseq.exporters._proxy import LayerRunner, Probe, StreamProxy

__all__ = ["ConvCacheProxy"]


def _own_padding(conv: nn.Module, axis: int) -> tuple[int, int]:
    """(left, right) zeros the layer itself adds on spatial axis ``axis`` (0-based)."""
    k, d = conv.kernel_size[axis], conv.dilation[axis]
    if conv.padding == "valid":
        return 0, 0
    if conv.padding == "same":  # torch puts the odd zero on the right
        total = d * (k - 1)
        return total // 2, total - total // 2
    p = conv.padding[axis]
    return p, p


def _pad_spec(rank: int, axis: int, frames: int) -> tuple[int, ...]:
    """The F.pad argument that puts ``frames`` zeros before axis ``axis`` of a rank-``rank``
    tensor (F.pad lists the last axis first)."""
    spec = [0] * (2 * (rank - 1 - axis) + 2)
    spec[-2] = frames
    return tuple(spec)


def _plural(n: int, word: str = "frame") -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class ConvCacheProxy(StreamProxy):
    """Stands in for an nn.Conv1d / nn.Conv2d; over time it carries a ``cache`` state.

    The cache is ``(batch, in_channels, L)`` for Conv1d, and for Conv2d the input's shape
    with ``L`` frames on its time axis; batch axis 0.
    """

    style = "conv_cache"
    batch_axis = 0

    def __init__(self, conv: nn.Module, path: str, runner: LayerRunner) -> None:
        super().__init__(conv, path, runner)
        self.time_axis: int | None = None  # axis of the conv's input that is time
        self.code_pad = (0, 0)  # zeros the user's code adds around the frames (F.pad)
        self.own_pad = (0, 0)  # the layer's own padding on the time axis
        self.cache = 0  # L: frames carried
        self.cache_shape: list[int] = []  # with -1 for batch
        self.refusal: str | None = None
        self.note = "not called"
        self.carry = False

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("cache",) if self.cache else ()

    def needs_lengths(self) -> bool:
        return self.carries

    # ---- settle: what the probe runs show about time, padding and causality
    def settle(self, probes: list[Probe]) -> None:
        a, b, c = probes
        conv = self.module
        if not a.inputs:
            return
        xa, xb, xc = a.inputs[0], b.inputs[0], c.inputs[0]
        grown = c.frames - a.frames
        axes = [ax for ax in range(2, xa.dim()) if xc.shape[ax] - xa.shape[ax] == grown]
        if xa.dim() < 3 or len(axes) != 1 or xa.shape[0] != a.batch:
            self.note = "not over the frames' time axis: stateless"
            return
        ax = axes[0]
        kind = type(conv).__name__
        if any(len(p.inputs) != 1 for p in probes):
            self.refusal = (
                f"layer {self.path!r} ({kind}) runs over time and is called "
                f"{len(a.inputs)} times per forward; edgeseq streams convolutions that run "
                "once per call. Use separate layers instead."
            )
            return
        k, d = conv.kernel_size[ax - 2], conv.dilation[ax - 2]
        span = d * (k - 1)  # frames the kernel reaches back from its last tap
        excess = xa.shape[ax] - a.frames  # frames the code added around the input
        if conv.stride[ax - 2] != 1:
            self.refusal = (
                f"layer {self.path!r} ({kind}, stride {conv.stride[ax - 2]} over time) "
                "decimates time, so a call's outputs depend on where the call starts. edgeseq "
                "streams stride-1 convolutions over time; export with offline=True (CLI: "
                "--offline) or downsample after the recurrent layers."
            )
            return
        if excess < 0:
            self.note = "its input is shorter than the frames: checked by chunked parity only"
            return
        dims = [i for i in range(xa.dim()) if i != ax]
        zero = ((xa == 0) & (xb == 0)).all(dim=dims[0], keepdim=True)
        for i in dims[1:]:
            zero = zero.all(dim=i, keepdim=True)
        flags = zero.flatten().tolist()  # per input position: zero in every probe
        lead = next((i for i, z in enumerate(flags) if not z), len(flags))
        trail = next((i for i, z in enumerate(reversed(flags)) if not z), len(flags))
        left = min(lead, excess)
        right = excess - left
        pl, pr = _own_padding(conv, ax - 2)
        causal_pad = _pad_spec(xa.dim(), ax, span)
        if trail < right:
            self.refusal = (
                f"layer {self.path!r} ({kind}): the code adds {_plural(excess)} around its "
                "input that are not zeros (replicate or reflect padding?). edgeseq streams "
                f"zero-padded convolutions: pad with zeros, e.g. F.pad(x, {causal_pad})."
            )
            return
        if (pl or pr) and conv.padding_mode != "zeros":
            self.refusal = (
                f"layer {self.path!r} ({kind}) pads time with padding_mode="
                f"{conv.padding_mode!r}, which reads frames a stream has not seen. Use "
                "padding_mode='zeros' (the default) or F.pad(x, (left, 0)) before it."
            )
            return
        cache, total_right = left + pl, right + pr
        out_frames = a.frames + cache + total_right - span
        if span > cache and out_frames <= a.frames:
            ahead = span - cache
            self.refusal = (
                f"layer {self.path!r} ({kind}, kernel {k}, dilation {d}, "
                f"{_plural(cache, 'frame')} of left padding) looks ahead {_plural(ahead)}: "
                f"its output at time t reads input frames up to t+{ahead}, so it cannot stream. "
                "Export with offline=True (CLI: --offline), or make it causal: "
                f"F.pad(x, {causal_pad}) before it with no padding over time, or padding={span} "
                f"over time and drop the last {span} outputs."
            )
            return
        self.time_axis, self.code_pad, self.own_pad, self.cache = ax, (left, right), (pl, pr), cache
        shape = list(xa.shape)
        shape[0], shape[ax] = -1, cache
        self.cache_shape = shape
        self.carry = cache > 0
        self.note = (
            f"conv cache: the last {_plural(cache)} of its input (kernel {k}, dilation {d})"
            if cache
            else "per frame (kernel 1): stateless"
        )

    def how(self, mode: str) -> str:
        return self.refusal or self.note

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "cache_frames": self.cache, "time_axis": self.time_axis}

    # ---- the computation
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.probe is not None:
            self.probe.inputs.append(x.detach().clone())
        self.calls += 1
        if not self.cache or self.time_axis is None:
            return self.module(x)
        ax, (left, right) = self.time_axis, self.code_pad
        frames = x[self._along(slice(left, -right if right else None), x.dim())]
        if self.state_in is None:  # plain call: the zeros the model itself starts from
            cache = frames.new_zeros([frames.shape[0] if s < 0 else s for s in self.cache_shape])
            self.initial = (cache,)
            y = self.module(x)
        else:
            cache = self.state_in[0]
        full = torch.cat([cache, frames], dim=ax)  # (batch, C, L + T[, ...])
        if self.state_in is not None:
            y = self._conv(full)
        self.state_out = (self._last_valid(full, frames),)
        return y

    def _along(self, s: slice, rank: int) -> tuple[slice, ...]:
        idx = [slice(None)] * rank
        idx[self.time_axis] = s  # type: ignore[index]
        return tuple(idx)

    def _conv(self, full: torch.Tensor) -> torch.Tensor:
        """The layer on ``[cache, frames]`` with the right-hand zeros, no left padding."""
        conv, ax, rank = self.module, self.time_axis, full.dim()
        right = self.code_pad[1] + self.own_pad[1]

        def pads(time: tuple[int, int], own: bool) -> list[int]:  # F.pad order: last axis first
            out: list[int] = []
            for i in reversed(range(2, rank)):
                out += list(time) if i == ax else list(_own_padding(conv, i - 2) if own else (0, 0))
            return out

        if conv.padding_mode != "zeros":  # other axes the layer's way; time has none (settled)
            full = F.pad(full, pads((0, 0), True), mode=conv.padding_mode)
            full = F.pad(full, pads((0, right), False))
        else:
            full = F.pad(full, pads((0, right), True))
        fn = F.conv1d if rank == 3 else F.conv2d
        return fn(full, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    def _last_valid(self, full: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The last ``L`` frames of ``full`` per row: before padding when ``lengths`` says."""
        ax, n = self.time_axis, self.cache
        lengths = self.lengths
        aligned = (
            lengths is not None
            and self.frames is not None
            and (frames.shape[0], frames.shape[ax]) == self.frames  # type: ignore[index]
        )
        if not aligned:
            return full[self._along(slice(-n, None), full.dim())]
        start = lengths.to(torch.int64).unsqueeze(1)  # type: ignore[union-attr]  # (batch, 1)
        idx = start + torch.arange(n, dtype=torch.int64).unsqueeze(0)  # (batch, L)
        view = [1] * full.dim()
        view[0], view[ax] = -1, n  # type: ignore[index]
        sizes = [-1 if i in (0, ax) else s for i, s in enumerate(self.cache_shape)]
        return torch.gather(full, ax, idx.reshape(view).expand(sizes))  # type: ignore[arg-type]
