"""Writing one graph of an export: trace the adapter with ``chunk`` frames, wire ``lengths``,
rewrite the edges to the recurrent ops' layout, check the op types for the mode, and save
the graph with its contract. :func:`~edgeseq.exporters.export` writes the chunk graph and
its one-step sibling through :func:`write_graph`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

import edgeseq
from edgeseq.contract import Contract, ModelFacts, Preprocessing, StatePair, TensorSpec
from edgeseq.errors import ExportError
from edgeseq.exporters._adapter import StreamAdapter
from edgeseq.exporters._layout import to_op_layout
from edgeseq.exporters._names import (
    memory_input_name,
    memory_output_name,
    state_input_name,
    state_output_name,
)
from edgeseq.exporters._onnx import (
    Backend,
    attach_contract,
    keep_idle_state,
    op_histogram,
    save_checked,
    torch_to_onnx,
    wire_lengths,
)
from edgeseq.exporters._validate import memory_rows
from edgeseq.exporters.modes import get_mode

__all__ = ["Graph", "check_ops", "expects_recurrent_ops", "producer", "write_graph"]


@dataclasses.dataclass(frozen=True)
class Graph:
    """What every graph of one export shares: the chunk graph and its one-step sibling."""

    adapter: StreamAdapter
    mode: str
    backend: Backend
    takes_lengths: bool  # the adapter masks frames through a lengths input
    wire_lengths: bool  # lengths wired into native sequence_lens after export
    states: list[tuple[tuple[str, str], int, torch.Tensor, Any]]  # key, batch axis, example, init
    memory: list[tuple[str, torch.Tensor]]  # (name, example): per-stream, passed through
    outputs: list[tuple[str, tuple[int | None, int | None, list[Any], str]]]  # name, probed
    facts: ModelFacts
    preprocessing: Preprocessing


def write_graph(g: Graph, x: torch.Tensor, chunk: int | None, path: Path, extra: dict) -> Contract:
    """Trace ``x`` (``chunk`` frames, or any number), check the graph, save it with its contract."""
    frames_shape: list[Any] = ["batch", chunk or "time", *x.shape[2:]]
    dyn: dict[str, dict[int, str]] = {"x": {0: "batch"} if chunk else {0: "batch", 1: "time"}}
    in_names = ["x"]
    args: list[torch.Tensor] = [x]
    if g.takes_lengths:
        in_names.append("lengths")
        args.append(torch.full((x.shape[0],), x.shape[1], dtype=torch.int32))
        dyn["lengths"] = {0: "batch"}
    state_pairs: list[StatePair] = []
    for (lpath, sname), ax, s, init in g.states:
        i_name, o_name = state_input_name(lpath, sname), state_output_name(lpath, sname)
        shape = [*s.shape]
        shape[ax] = "batch"
        dtype = str(s.dtype).replace("torch.", "")
        state_pairs.append(StatePair(i_name, o_name, shape, ax, dtype, init))
        in_names.append(i_name)
        args.append(s)
        dyn[i_name] = dyn[o_name] = {ax: "batch"}
    recurrent = list(state_pairs)  # memory passes through: no idle row to keep
    for name, m in g.memory:  # carried like state: batch axis 0, fixed rows
        i_name, o_name = memory_input_name(name), memory_output_name(name)
        state_pairs.append(StatePair(i_name, o_name, ["batch", *m.shape[1:]], 0, "float32"))
        in_names.append(i_name)
        args.append(memory_rows([m], x.shape[0])[0])
        dyn[i_name] = dyn[o_name] = {0: "batch"}
    outputs = []
    for name, (b_ax, t_ax, shape, dtype) in g.outputs:
        shape = list(shape)
        if chunk and t_ax is not None:
            shape[t_ax] = chunk
        outputs.append(TensorSpec(name, shape, dtype, b_ax, t_ax))
        dyn[name] = {ax: sym for ax, sym in enumerate(shape) if isinstance(sym, str)}
    all_out_names = [o.name for o in outputs] + [p.output for p in state_pairs]

    proto = torch_to_onnx(g.adapter, tuple(args), in_names, all_out_names, dyn, g.backend)
    lengths_name = "lengths" if g.takes_lengths else None
    if g.wire_lengths and wire_lengths(proto, "lengths"):
        lengths_name = "lengths"
    # tensors at the edges as the recurrent ops take them: the contract records how
    layout = to_op_layout(proto, "x", state_pairs)
    kept = {p.input for p in recurrent}  # memory passes through: no idle row to keep
    recurrent = [p for p in layout.states if (p.part_of or p.input) in kept]
    state_pairs = layout.states
    if layout.time_major:
        frames_shape[0], frames_shape[1] = frames_shape[1], frames_shape[0]
    if g.wire_lengths and lengths_name:  # a row without frames keeps every state
        pairs = [(p.input, p.output) for p in recurrent]
        layouts = [(p.batch_axis, len(p.shape)) for p in recurrent]
        keep_idle_state(proto, "lengths", pairs, layouts)
    expect = expects_recurrent_ops(g.facts.extra.get("streamed"))
    check_ops(proto, g.mode, raise_error=True, expect_recurrent=expect)

    facts = dataclasses.replace(g.facts, chunk=chunk, extra={**g.facts.extra, **extra})
    axes = (1, 0) if layout.time_major else (0, 1)
    contract = Contract(
        inputs=[TensorSpec("x", frames_shape, str(x.dtype).replace("torch.", ""), *axes)],
        outputs=outputs
        + [TensorSpec(p.output, p.shape, p.dtype, p.batch_axis, None) for p in state_pairs],
        states=state_pairs,
        lengths=lengths_name,
        memory=[memory_input_name(n) for n, _ in g.memory],
        model=facts,
        preprocessing=g.preprocessing,
        producer=producer(g.backend),
    )
    contract = attach_contract(proto, contract)  # as stored: with the weights' digest
    save_checked(proto, path)
    return contract


def expects_recurrent_ops(streamed: list[dict[str, Any]] | None) -> bool:
    """Whether a native graph must hold recurrent nodes: it streams a layer or a cell.

    ``streamed`` is the contract's ``model.extra["streamed"]`` (None: a file from before
    it existed, which always streamed recurrent layers).
    """
    if streamed is None:
        return True
    return any(s.get("style") in ("recurrent", "cell_loop") for s in streamed)


def check_ops(
    proto: onnx.ModelProto, mode: str, raise_error: bool = False, expect_recurrent: bool = True
) -> list[str]:
    """Problems with the graph's op types for ``mode`` (forbidden present, required absent).

    Returns a list of one-line problems (empty when the graph fits its mode); with
    ``raise_error`` the first problem raises :class:`ExportError`. Without
    ``expect_recurrent`` (a model of causal convolutions only) no op is required.
    """
    spec = get_mode(mode)
    ops = op_histogram(proto)
    problems = []
    bad = sorted(set(ops) & spec.forbidden_ops)
    if bad:
        problems.append(f"mode {mode!r} must not contain {bad}, but the graph has {ops}")
    if expect_recurrent and spec.required_ops and not set(ops) & spec.required_ops:
        problems.append(
            f"mode {mode!r} expects one of {sorted(spec.required_ops)} in the graph, got {ops}"
        )
    if problems and raise_error:
        raise ExportError(problems[0])
    return problems


def producer(backend: str) -> dict[str, str]:
    import onnxruntime

    return {
        "edgeseq": edgeseq.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "exporter": f"torch.onnx/{backend}",
    }
