"""The export algorithm, written once for every mode: module -> streaming ONNX + contract."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

import edgeseq
from edgeseq.contract import Contract, ModelFacts, Preprocessing, StatePair, TensorSpec
from edgeseq.errors import ExportError
from edgeseq.exporters._adapter import (
    LayerInfo,
    StreamAdapter,
    as_streamable,
    eager,
    find_recurrent_layers,
)
from edgeseq.exporters._anytime import one_step_note
from edgeseq.exporters._causal import check_ragged, check_streamable
from edgeseq.exporters._layout import to_op_layout
from edgeseq.exporters._names import (
    memory_input_name,
    memory_output_name,
    sibling_path,
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
from edgeseq.exporters._validate import (
    check_args,
    check_memory,
    fit_example,
    initial_values,
    memory_rows,
    pick_mode,
    refuse_layers,
    refuse_nothing,
)
from edgeseq.exporters.modes import get_mode

__all__ = [
    "check_ops",
    "expects_recurrent_ops",
    "export",
    "memory_input_name",
    "memory_output_name",
    "sibling_path",
    "state_input_name",
    "state_output_name",
]

_GROW_T = 2  # frames the axis probe adds


def _probe_axes(run, x: torch.Tensor) -> list[tuple[int | None, int | None, list[Any], str]]:
    """For each output: (batch axis, time axis, symbolic shape, dtype), found by changing B, T.

    The probe adds one row and :data:`_GROW_T` frames (whatever the example's length: a
    one-frame example must grow by as much as a long one), so an axis is the time axis
    exactly when it grows by that much.
    """
    b, t = x.shape[0], x.shape[1]
    ref = run(x)
    bigger_b = run(torch.cat([x, x[:1]], dim=0))
    bigger_t = run(torch.cat([x, x[:, -1:].repeat_interleave(_GROW_T, dim=1)], dim=1))
    result = []
    for r, rb, rt in zip(ref, bigger_b, bigger_t):
        shape: list[Any] = list(r.shape)
        batch_axis = time_axis = None
        for ax in range(r.dim()):
            if rb.shape[ax] == r.shape[ax] + 1 and r.shape[ax] == b and batch_axis is None:
                batch_axis, shape[ax] = ax, "batch"
            elif rt.shape[ax] == r.shape[ax] + _GROW_T and r.shape[ax] == t and time_axis is None:
                time_axis, shape[ax] = ax, "time"
        result.append((batch_axis, time_axis, shape, str(r.dtype).replace("torch.", "")))
    return result


@eager()
def export(
    model: nn.Module,
    path: str | Path,
    *,
    example: torch.Tensor,
    mode: str | None = None,
    chunk: int | None = None,
    backend: Backend = "torchscript",
    facts: ModelFacts | None = None,
    preprocessing: Preprocessing | None = None,
    output_names: list[str] | None = None,
    offline: bool = False,
    lengths: bool | None = None,
    memory: Mapping[str, torch.Tensor] | None = None,
) -> Contract:
    """Export ``model`` as a streaming ONNX model at ``path`` and return its contract.

    Parameters
    ----------
    model
        Any module whose ``forward(x)`` takes batch-first ``x`` ``(batch, time, features)``
        (or ``(batch, time)`` token ids) and returns a tensor or a tuple of tensors. Its
        code is not changed; what it streams (see :data:`edgeseq.exporters.STYLES` and
        :func:`edgeseq.exporters.explain`):

        - nn.RNN / nn.LSTM / nn.GRU layers (or such a layer itself): each state becomes a
          pair ``state_in.<path>.<h|c>`` ``(layers*dirs, batch, size)``; a state the
          forward passes to a layer becomes the stream's initial value;
        - nn.RNNCell / LSTMCell / GRUCell stepped in a Python loop over time: the loop body
          is the step, ``state_in.<cell path>.<h|c>`` ``(1, batch, hidden)``;
        - causal nn.Conv1d / nn.Conv2d over time (left padding ``(k-1)*d``): a cache of
          past input frames, ``state_in.<conv path>.cache`` ``(batch, channels, frames)``;
        - ``forward(x, state=None) -> (y, state)``: every tensor of ``state`` becomes a pair
          named after its place (``state_in.state.0.1``); ``y`` is the output. Several
          state arguments, ``forward(x, h=None, c=None) -> (y, h, c)``: ``state_in.h``...
    example
        An input of the right feature size and dtype (float32 or int64); batch and time
        are made dynamic (time is fixed to ``chunk`` in fixed-chunk modes).
    mode
        ``native`` (ONNX recurrent ops) or ``unrolled`` (basic ops, fixed ``chunk``); see
        :data:`edgeseq.exporters.MODES`. None (default): native, unless a layer cannot be
        expressed natively (an LSTM with ``proj_size``), then the first mode that works;
        the contract says so in ``model.extra["mode_note"]``. A cell loop makes a native
        graph one step (``chunk`` 1) of the loop.
    chunk
        Frames per graph call for fixed-chunk modes (default: the mode's, 16 for
        ``unrolled``). Any number of frames still streams. A stateful fixed-chunk graph of
        more than one frame also gets a one-step graph beside it (``MODEL.step.onnx``,
        named in the contract), which the runtime uses for calls shorter than the chunk,
        so frame-by-frame streaming costs one frame, not a whole chunk.
    backend
        ``torchscript`` (default; native ops for all three cells) or ``dynamo``.
    offline
        Carry no state: every call is a whole sequence from the initial state. For models
        that cannot stream (bidirectional layers, attention or pooling over time), and
        for one-to-one models whose frames are independent.
    lengths
        Give the graph a ``lengths`` input ``(batch,)`` int32 of valid frames per row, so
        rows of different frame counts share one call (a
        :class:`~edgeseq.runtime.StreamPool` stepping ragged chunks in one call, the
        device-resident pool) and fixed chunks can be padded. None (default): the mode's
        choice (:attr:`ModeSpec.default_lengths`). ``native`` leaves it out: wired to the
        recurrent nodes' ``sequence_lens`` it runs correctly on onnxruntime only (tract
        refuses a fed ``sequence_lens``; OpenVINO's and the ONNX reference's final state
        ignore it), and without it a pool makes one call per distinct frame count.
        ``unrolled`` keeps it: there it is a frame mask in basic ops every runtime runs.
        See ``docs/porting.md``. With ``lengths`` a conv cache keeps each row's last
        valid frames (a gather); without it, every row of a call has all its frames.
    memory
        Per-stream inputs the model's ``forward(x, **memory)`` reads on every call, such
        as an encoder's outputs an attention decoder attends over: ``{name: example}``,
        each float32 ``(batch, ...)`` with the example's batch and fixed trailing sizes
        (a memory of fewer rows is padded by its user, with a mask passed as another
        memory). Each becomes input ``memory_in.<name>``, returned unchanged as
        ``memory_out.<name>``: the contract lists it under ``memory`` and the runtime
        carries it like state, set when a stream starts (``set_state``).

    Raises
    ------
    ExportError
        The model cannot stream (bidirectional layer, output depending on later frames),
        a layer cannot be expressed in ``mode``, or torch.onnx fails; the message says why.
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = as_streamable(model)
    layers = find_recurrent_layers(model)
    mode, mode_note = pick_mode(mode, layers, backend, offline)
    spec, chunk = check_args(mode, chunk, backend)
    if lengths is None:
        lengths = spec.default_lengths
    if not isinstance(lengths, bool):
        raise ExportError(f"lengths must be True, False or None (the mode's), got {lengths!r}")
    x = fit_example(example, chunk)
    mem_names, mem = check_memory(memory, example, x, offline)
    refuse_layers(layers, spec, backend, offline)
    adapter = StreamAdapter(
        model,
        spec.runner,
        takes_lengths=spec.takes_lengths and lengths,
        carry_state=not offline,
        memory=mem_names,
    )
    adapter.set_memory(mem)  # forward(x, **memory) reads it in every probe and check
    adapter.prepare(x)  # settles each streamed module, or refuses naming it (unless offline)
    refuse_nothing(adapter, offline)
    # offline fixed chunks still pad; a conv cache needs lengths to keep a row's last frames
    takes_lengths = adapter.takes_lengths = lengths and (
        spec.takes_lengths or (not offline and adapter.needs_lengths())
    )
    if adapter.one_step() and not spec.fixed_chunk and not offline:
        chunk = 1  # a cell loop in a native graph: the graph is one step of the loop

    # ---- state pairs: names, shapes, batch axes, initial values
    keys, axes = adapter.state_keys(), adapter.state_axes()
    init_states = adapter.initial_states(x)
    inits = initial_values(init_states, keys, axes)

    def run_states(
        inp: torch.Tensor, states: list[torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
        valid = [torch.full((inp.shape[0],), inp.shape[1], dtype=torch.int32)]
        out = adapter(inp, *(valid if takes_lengths else []), *states)
        n = adapter.n_outputs or 0
        return out[:n], list(out[n:])

    def run(inp: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = _rows(init_states, axes, inp.shape[0]) + memory_rows(mem, inp.shape[0])
        return run_states(inp, rows)[0]

    probed = _probe_axes(run, x)
    n_out = len(probed)
    out_names = list(output_names or (["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]))
    state_names = {f(p, n) for p, n in keys for f in (state_input_name, state_output_name)}
    state_names |= {f(n) for n in mem_names for f in (memory_input_name, memory_output_name)}
    if len(out_names) != n_out or len(set(out_names)) != n_out:
        raise ExportError(f"output_names needs {n_out} distinct names, got {out_names}")
    if set(out_names) & (state_names | {"x", "lengths"}):
        raise ExportError(f"output_names {out_names} collide with the graph's input/state names")
    wire = spec.wire_native_lengths and lengths and not offline  # sequence_lens, idle rows
    if not offline:
        check_streamable(adapter, run_states, x, [*init_states, *mem], out_names)
        if takes_lengths or (wire and expects_recurrent_ops(adapter.streamed())):
            # rows of a call may have fewer frames than the call: their state must stop
            labels = [state_input_name(p, n) for p, n in keys]
            labels += [memory_input_name(n) for n in mem_names]
            all_axes = [*axes, *[0] * len(mem)]
            check_ragged(adapter, x, [*init_states, *mem], labels, all_axes, chunk or 6, wire)

    graph = _Graph(
        adapter=adapter,
        mode=mode,
        backend=backend,
        takes_lengths=takes_lengths,
        wire_lengths=wire,
        states=list(zip(keys, axes, init_states, inits)),
        memory=list(zip(mem_names, mem)),
        outputs=list(zip(out_names, probed)),
        facts=_facts(
            facts, layers, x, mode, chunk, offline, backend, adapter.streamed(), mode_note
        ),
        preprocessing=preprocessing or Preprocessing(),
    )
    extra: dict[str, Any] = {}
    if chunk and chunk > 1 and not offline:  # calls shorter than the chunk run this instead
        step_path = sibling_path(path, "step")
        step = _write(
            graph, x[:, :1], 1, step_path, {"role": "step", "chunk_model": Path(path).name}
        )
        extra["step_model"] = {
            "file": step_path.name,
            "weights_sha256": step.producer["weights_sha256"],
        }
    contract = _write(graph, x[:, :chunk] if chunk else x, chunk, Path(path), extra)
    if chunk is None:  # a Python loop over time may have fixed the traced frame count
        states = [*init_states, *mem]  # memory rides after the states, as the graph takes it
        note = one_step_note(Path(path), run_states, x, states, offline, mode_note)
        if note:  # the graph is one step of the loop, as for a cell loop
            contract = _write(graph, x[:, :1], 1, Path(path), {**extra, "mode_note": note})
    return contract


@dataclasses.dataclass(frozen=True)
class _Graph:
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


def _write(g: _Graph, x: torch.Tensor, chunk: int | None, path: Path, extra: dict) -> Contract:
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
        producer=_producer(g.backend),
    )
    contract = attach_contract(proto, contract)  # as stored: with the weights' digest
    save_checked(proto, path)
    return contract


def _rows(states: list[torch.Tensor], axes: list[int], batch: int) -> list[torch.Tensor]:
    """Initial states for ``batch`` rows: row 0 repeated along each state's batch axis."""
    out = []
    for s, ax in zip(states, axes):
        shape = [-1] * s.dim()
        shape[ax] = batch
        out.append(s.narrow(ax, 0, 1).expand(*shape).contiguous())
    return out


def _facts(
    base: ModelFacts | None,
    layers: list[LayerInfo],
    x: torch.Tensor,
    mode: str,
    chunk: int | None,
    offline: bool,
    backend: str,
    streamed: list[dict[str, Any]],
    mode_note: str | None,
) -> ModelFacts:
    base = base or ModelFacts()
    cells = {i.cell for i in layers} | {s["cell"] for s in streamed if s["style"] == "cell_loop"}
    return dataclasses.replace(
        base,
        cell=base.cell
        if base.cell != "unknown"
        else (cells.pop() if len(cells) == 1 else ("mixed" if cells else "unknown")),
        layers=base.layers or (sum(i.layers for i in layers) or None),
        hidden_size=base.hidden_size or (layers[0].hidden_size if layers else None),
        input_size=base.input_size or (int(x.shape[2]) if x.dim() > 2 else None),
        mode=mode,
        chunk=chunk,
        stateful=not offline,
        extra={
            **base.extra,
            "backend": backend,
            "example_time": int(x.shape[1]),
            "layers": [dataclasses.asdict(i) for i in layers],
            "streamed": streamed,  # how each module streams: style, path, carried state
            **({"mode_note": mode_note} if mode_note else {}),
            # an offline fixed-chunk graph sees one whole sequence per call: at most `chunk`
            **({"max_frames_per_call": chunk} if offline and chunk else {}),
        },
    )


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


def _producer(backend: str) -> dict[str, str]:
    import onnxruntime

    return {
        "edgeseq": edgeseq.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "exporter": f"torch.onnx/{backend}",
    }
