"""The export algorithm, written once for every mode: module -> streaming ONNX + contract."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

import edgeseq
from edgeseq.contract import Contract, ModelFacts, Preprocessing, StatePair, TensorSpec
from edgeseq.errors import ExportError
from edgeseq.exporters._adapter import StreamAdapter, find_recurrent_layers
from edgeseq.exporters._onnx import (
    Backend,
    attach_contract,
    op_histogram,
    save_checked,
    torch_to_onnx,
    wire_lengths,
)
from edgeseq.exporters.modes import get_mode

__all__ = ["export", "state_input_name", "state_output_name"]


def state_input_name(path: str, name: str) -> str:
    """Graph input carrying ``name`` (h or c) of the layer at module path ``path``."""
    return f"state_in.{path}.{name}"


def state_output_name(path: str, name: str) -> str:
    return f"state_out.{path}.{name}"


def _grow_example(x: torch.Tensor) -> torch.Tensor:
    """At least batch 2 and time 3, so no exporter can mistake an axis for a constant."""
    if x.dim() < 2:
        raise ExportError(
            f"example must be (batch, time, ...) with a batch and a time axis, got shape "
            f"{tuple(x.shape)}. Pass e.g. torch.randn(2, 8, features)."
        )
    if x.shape[0] < 2:
        x = torch.cat([x, x], dim=0)
    while x.shape[1] < 3:
        x = torch.cat([x, x], dim=1)
    return x


def _probe_axes(run, x: torch.Tensor) -> list[tuple[int | None, int | None, list[Any]]]:
    """For each output: (batch axis, time axis, symbolic shape), found by changing B and T."""
    b, t = x.shape[0], x.shape[1]
    ref = run(x)
    bigger_b = run(torch.cat([x, x[:1]], dim=0))
    bigger_t = run(torch.cat([x, x[:, :2]], dim=1))
    result = []
    for r, rb, rt in zip(ref, bigger_b, bigger_t):
        shape: list[Any] = list(r.shape)
        batch_axis = time_axis = None
        for ax in range(r.dim()):
            if rb.shape[ax] == r.shape[ax] + 1 and r.shape[ax] == b and batch_axis is None:
                batch_axis, shape[ax] = ax, "batch"
            elif rt.shape[ax] == r.shape[ax] + 2 and r.shape[ax] == t and time_axis is None:
                time_axis, shape[ax] = ax, "time"
        result.append((batch_axis, time_axis, shape))
    return result


def _initial_values(states: list[torch.Tensor], keys: list[tuple[str, str]]) -> list[Any]:
    """Contract ``init`` for each state: "zeros", or batch-row-0 values if all rows agree."""
    inits: list[Any] = []
    for (path, name), s in zip(keys, states):
        if not torch.any(s):
            inits.append("zeros")
            continue
        row = s[:, :1]
        if not torch.allclose(s, row.expand_as(s)):
            raise ExportError(
                f"layer {path!r}: the initial state {name} the model passes differs between "
                "batch rows, so it depends on the input and cannot start a stream. Pass a "
                "constant (or learned, batch-expanded) initial state, or use mode='offline'."
            )
        inits.append([float(v) for v in row.reshape(-1)])
    return inits


def export(
    model: nn.Module,
    path: str | Path,
    *,
    example: torch.Tensor,
    mode: str = "native",
    backend: Backend = "torchscript",
    facts: ModelFacts | None = None,
    preprocessing: Preprocessing | None = None,
    output_names: list[str] | None = None,
    offline: bool = False,
) -> Contract:
    """Export ``model`` as a streaming ONNX model at ``path`` and return its contract.

    Parameters
    ----------
    model
        Any module whose ``forward(x)`` takes batch-first ``x`` ``(batch, time, features)``
        (or ``(batch, time)`` token ids) and returns a tensor or a tuple of tensors, calling
        nn.RNN / nn.LSTM / nn.GRU layers inside. Its code is not changed: every recurrent
        layer's state becomes a contract state pair ``state_in.<path>.<h|c>``.
    example
        An input of the right feature size and dtype; batch and time are made dynamic.
    mode
        ``native`` (ONNX recurrent ops) or ``unrolled`` (basic ops); see
        :data:`edgeseq.exporters.MODES`.
    backend
        ``torchscript`` (default; native ops for all three cells) or ``dynamo``.
    offline
        Carry no state: every call is a whole sequence from the initial state. For models
        that cannot stream (bidirectional layers, attention or pooling over time), and
        for one-to-one models whose frames are independent.
    """
    spec = get_mode(mode)
    model = model.eval()
    x = _grow_example(example.detach())
    layers = find_recurrent_layers(model)
    if not layers:
        raise ExportError(
            "the model has no nn.RNN/nn.LSTM/nn.GRU layer, so there is no state to stream "
            "and nothing for edgeseq to convert. Export it with torch.onnx directly."
        )
    for info in layers:
        if info.bidirectional and not offline:
            raise ExportError(
                f"layer {info.path!r} is bidirectional: its output at time t depends on "
                "later frames, so it cannot stream. Export with offline=True (CLI: "
                "--offline; whole sequence per call) or make the layer unidirectional."
            )
    if backend == "dynamo" and mode == "native" and any(i.cell == "rnn" for i in layers):
        raise ExportError(
            "the dynamo exporter decomposes nn.RNN into a fixed-length loop, so the graph "
            "would not accept other lengths. Use backend='torchscript' for native RNN "
            "ops, or mode='unrolled'."
        )
    takes_lengths = spec.takes_lengths and not offline
    adapter = StreamAdapter(
        model, spec.runner, takes_lengths=takes_lengths, carry_state=not offline
    )

    # ---- state pairs: names, shapes, initial values
    keys = adapter.state_keys()
    with torch.no_grad():
        init_states = adapter.initial_states(x)
    inits = _initial_values(init_states, keys)
    lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int32)

    def run(inp: torch.Tensor) -> tuple[torch.Tensor, ...]:
        states = [s[:, :1].expand(-1, inp.shape[0], *s.shape[2:]).contiguous() for s in init_states]
        args = (
            [inp]
            + (
                [torch.full((inp.shape[0],), inp.shape[1], dtype=torch.int32)]
                if takes_lengths
                else []
            )
            + states
        )
        with torch.no_grad():
            out = adapter(*args)
        return out[: adapter.n_outputs]

    probed = _probe_axes(run, x)
    n_out = len(probed)
    out_names = output_names or (["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)])
    if len(out_names) != n_out:
        raise ExportError(f"output_names has {len(out_names)} names for {n_out} outputs")

    frames_shape: list[Any] = ["batch", "time", *x.shape[2:]]
    frames_dtype = str(x.dtype).replace("torch.", "")
    dyn: dict[str, dict[int, str]] = {"x": {0: "batch", 1: "time"}}
    in_names = ["x"]
    args: list[torch.Tensor] = [x]
    if takes_lengths:
        in_names.append("lengths")
        args.append(lengths)
        dyn["lengths"] = {0: "batch"}
    state_pairs: list[StatePair] = []
    for (lpath, sname), s, init in zip(keys, init_states, inits):
        i_name, o_name = state_input_name(lpath, sname), state_output_name(lpath, sname)
        shape = [*s.shape]
        shape[1] = "batch"
        state_pairs.append(StatePair(i_name, o_name, shape, 1, "float32", init))
        in_names.append(i_name)
        args.append(s)
        dyn[i_name] = dyn[o_name] = {1: "batch"}
    outputs = []
    for name, (b_ax, t_ax, shape) in zip(out_names, probed):
        outputs.append(TensorSpec(name, shape, "float32", b_ax, t_ax))
        dyn[name] = {ax: sym for ax, sym in enumerate(shape) if isinstance(sym, str)}
    all_out_names = out_names + [p.output for p in state_pairs]

    proto = torch_to_onnx(adapter, tuple(args), in_names, all_out_names, dyn, backend)
    lengths_name = "lengths" if takes_lengths else None
    if spec.wire_native_lengths and not offline and wire_lengths(proto, "lengths"):
        lengths_name = "lengths"
    _check_ops(proto, spec, mode)

    base = facts or ModelFacts()
    cells = {i.cell for i in layers}
    facts = dataclasses.replace(
        base,
        cell=base.cell
        if base.cell != "unknown"
        else (cells.pop() if len(cells) == 1 else ("mixed" if cells else "unknown")),
        layers=base.layers or (sum(i.layers for i in layers) or None),
        hidden_size=base.hidden_size or (layers[0].hidden_size if layers else None),
        input_size=base.input_size or (int(x.shape[2]) if x.dim() > 2 else None),
        mode=mode,
        stateful=not offline,
        extra={**base.extra, "backend": backend, "layers": [dataclasses.asdict(i) for i in layers]},
    )
    contract = Contract(
        inputs=[TensorSpec("x", frames_shape, frames_dtype, 0, 1)],
        outputs=outputs + [TensorSpec(p.output, p.shape, "float32", 1, None) for p in state_pairs],
        states=state_pairs,
        lengths=lengths_name,
        model=facts,
        preprocessing=preprocessing or Preprocessing(),
        producer=_producer(backend),
    )
    attach_contract(proto, contract)
    save_checked(proto, path)
    return contract


def _check_ops(proto: onnx.ModelProto, spec, mode: str) -> None:
    ops = op_histogram(proto)
    bad = sorted(set(ops) & spec.forbidden_ops)
    if bad:
        raise ExportError(f"mode {mode!r} must not contain {bad}, but the graph has {ops}")
    if spec.required_ops and not set(ops) & spec.required_ops:
        raise ExportError(
            f"mode {mode!r} expects one of {sorted(spec.required_ops)} in the graph, got {ops}"
        )


def _producer(backend: str) -> dict[str, str]:
    import onnxruntime  # noqa: F401  (version recorded for bug reports)

    return {
        "edgeseq": edgeseq.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "exporter": f"torch.onnx/{backend}",
    }
