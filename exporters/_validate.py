"""Checks before an export: arguments, the example, and what layers a mode can express.

Each refusal says what was expected, what was got and what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from edgeseq.errors import ExportError
from edgeseq.exporters._options import ExportOptions
from edgeseq.exporters._recurrent import LayerInfo
from edgeseq.exporters.modes import MODES, ModeSpec, get_mode

__all__ = [
    "check_args",
    "check_memory",
    "fit_example",
    "initial_values",
    "memory_rows",
    "pick_mode",
    "refuse_layers",
    "refuse_nothing",
]


def check_args(mode: str, chunk: int | None) -> tuple[ModeSpec, int | None]:
    """The mode's spec and the chunk to use (the mode's default for fixed-chunk modes);
    the values themselves were checked by :class:`ExportOptions`."""
    spec = get_mode(mode)
    if spec.fixed_chunk:
        return spec, chunk or spec.default_chunk
    if chunk is not None:
        raise ExportError(
            f"mode {mode!r} takes any number of frames per call, so chunk={chunk} does not "
            "apply; chunk is for fixed-length modes such as 'unrolled'."
        )
    return spec, None


def fit_example(x: Any, chunk: int | None) -> torch.Tensor:
    """At least batch 2 and time 3 (exactly ``chunk`` frames for fixed-chunk modes).

    Batch and time of at least 2 and 3 keep any exporter from mistaking an axis for a
    constant; a fixed-chunk graph is traced at its chunk length.
    """
    if not isinstance(x, torch.Tensor):
        raise ExportError(
            f"example must be a torch.Tensor (batch, time, ...), got {type(x).__name__}. "
            "Pass e.g. example=torch.randn(2, 8, features)."
        )
    if x.dim() < 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ExportError(
            f"example must be (batch, time, ...) with a batch and a time axis, got shape "
            f"{tuple(x.shape)}. Pass e.g. torch.randn(2, 8, features)."
        )
    if x.dtype.is_floating_point and x.dtype != torch.float32:
        raise ExportError(
            f"example has dtype {x.dtype}; edgeseq streams float32 frames. Pass "
            "example.float() (and model.float())."
        )
    if not x.dtype.is_floating_point and x.dtype != torch.int64:
        raise ExportError(
            f"example has dtype {x.dtype}; token models take int64 ids. Pass example.long()."
        )
    if x.dtype.is_floating_point and not torch.isfinite(x).all():
        raise ExportError("example contains NaN or Inf; pass finite frames.")
    x = x.detach()
    if x.shape[0] < 2:
        x = torch.cat([x, x], dim=0)
    want = chunk or 3
    while x.shape[1] < want:
        x = torch.cat([x, x], dim=1)
    return x[:, :chunk] if chunk else x


def initial_values(
    states: list[torch.Tensor], keys: list[tuple[str, str]], axes: list[int] | None = None
) -> list[Any]:
    """Contract ``init`` for each state: "zeros", or batch-row-0 values if all rows agree.

    ``axes`` are the states' batch axes (default 1, the recurrent layers' layout).
    """
    inits: list[Any] = []
    for (path, name), s, ax in zip(keys, states, axes or [1] * len(states)):
        if not torch.any(s):
            inits.append("zeros")
            continue
        row = s.narrow(ax, 0, 1)
        if not torch.allclose(s, row.expand_as(s)):
            raise ExportError(
                f"layer {path!r}: the initial state {name} the model passes differs between "
                "batch rows, so it depends on the input and cannot start a stream. Pass a "
                "constant (or learned, batch-expanded) initial state, or export with "
                "offline=True."
            )
        inits.append([float(v) for v in row.reshape(-1)])
    return inits


def pick_mode(options: ExportOptions, layers: list[LayerInfo]) -> tuple[str, str | None]:
    """``options.mode``, or when None the first registered mode that can express every layer.

    Returns the mode and, when it is not the first registered one, a note saying why.
    """
    if options.mode is not None:
        return options.mode, None
    first = next(iter(MODES))
    why = None
    for name, spec in MODES.items():
        try:
            refuse_layers(layers, spec, options)
        except ExportError as exc:
            why = why or str(exc).split(". ")[0]
            continue
        note = None if name == first else f"{why}: exported in mode {name!r} instead"
        return name, note
    return first, None  # every mode refuses: let the first say why


def refuse_nothing(adapter: Any, offline: bool) -> None:
    """Refuse a model with nothing to stream (or, offline, nothing recurrent to convert)."""
    styles = {p.style for p in adapter.proxies}
    if adapter.state_keys() or adapter.explicit or (offline and styles - {"conv_cache"}):
        return
    raise ExportError(
        "the model has no nn.RNN/nn.LSTM/nn.GRU layer, no RNN cell stepped over time, no "
        "causal convolution over time and no state argument, so there is no state to "
        "stream and nothing for edgeseq to convert. Export it with torch.onnx directly "
        "(see edgeseq.exporters.explain(model, example) for how each layer was read)."
    )


def refuse_layers(layers: list[LayerInfo], spec: ModeSpec, options: ExportOptions) -> None:
    """Refuse, by construction, layers this mode/backend cannot export or stream."""
    for info in layers:
        if info.bidirectional and not options.offline:
            raise ExportError(
                f"layer {info.path!r} is bidirectional: its output at time t depends on "
                "later frames, so it cannot stream. Export with offline=True (CLI: "
                "--offline; whole sequence per call) or make the layer unidirectional."
            )
        if info.proj_size and spec.wire_native_lengths:
            raise ExportError(
                f"layer {info.path!r} is an LSTM with proj_size={info.proj_size}, which the "
                "ONNX LSTM op cannot express. Export with mode='unrolled' (CLI: --mode "
                "unrolled), or leave the mode unset and edgeseq picks it."
            )
    rnn = any(i.cell == "rnn" for i in layers)
    if options.backend == "dynamo" and spec.wire_native_lengths and rnn:
        raise ExportError(
            "the dynamo exporter decomposes nn.RNN into a fixed-length loop, so the graph "
            "would not accept other lengths. Use backend='torchscript' for native RNN "
            "ops, or mode='unrolled'."
        )


def memory_rows(memory: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Memory for ``batch`` rows: the example's rows, cycled along the batch axis (0)."""
    return [m[torch.arange(batch) % m.shape[0]] for m in memory]


def check_memory(
    memory: Mapping[str, torch.Tensor] | None,
    example: Any,
    x: torch.Tensor,
    offline: bool,
) -> tuple[list[str], list[torch.Tensor]]:
    """Memory names and examples with the (fitted) example's batch, or an ExportError."""
    if not memory:
        return [], []
    if offline:
        raise ExportError(
            "memory is carried from call to call like state, but offline=True carries "
            "nothing; pass the memory as a second input of an offline model's own wrapper, "
            "or export it streaming."
        )
    names, values = [], []
    for name, m in memory.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ExportError(
                f"memory names must be Python identifiers (forward's keyword arguments), "
                f"got {name!r}"
            )
        if not isinstance(m, torch.Tensor) or m.dtype != torch.float32 or m.dim() < 2:
            got = f"{m.dtype} {tuple(m.shape)}" if isinstance(m, torch.Tensor) else type(m)
            raise ExportError(
                f"memory[{name!r}]: expected a float32 tensor (batch, ...) of rank >= 2, got "
                f"{got}. Pass e.g. encoder outputs (batch, rows, size) and a float mask."
            )
        if m.shape[0] != example.shape[0]:
            raise ExportError(
                f"memory[{name!r}]: expected the example's batch {example.shape[0]} on axis 0, "
                f"got shape {tuple(m.shape)}"
            )
        if not torch.isfinite(m).all():
            raise ExportError(f"memory[{name!r}] contains NaN or Inf; pass finite values.")
        names.append(name)
        values.append(memory_rows([m.detach()], x.shape[0])[0])
    return names, values
