"""The export algorithm, written once for every mode: module -> streaming ONNX + contract."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseq.contract import Contract, ModelFacts, Preprocessing
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
from edgeseq.exporters._names import (
    memory_input_name,
    memory_output_name,
    sibling_path,
    state_input_name,
    state_output_name,
)
from edgeseq.exporters._onnx import Backend
from edgeseq.exporters._options import ExportOptions
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
from edgeseq.exporters._write import Graph, check_ops, expects_recurrent_ops, write_graph

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
    options: ExportOptions | None = None,
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
    options
        ``mode``, ``chunk``, ``backend``, ``offline`` and ``lengths`` as one
        :class:`~edgeseq.exporters.ExportOptions` (to share with :func:`explain` and
        :func:`export_model`); then leave those keywords out.

    Raises
    ------
    ExportError
        The model cannot stream (bidirectional layer, output depending on later frames),
        a layer cannot be expressed in ``mode``, or torch.onnx fails; the message says why.
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    opts = ExportOptions.given(
        options, mode=mode, chunk=chunk, backend=backend, offline=offline, lengths=lengths
    )
    backend, offline = opts.backend, opts.offline
    model = as_streamable(model)
    layers = find_recurrent_layers(model)
    mode, mode_note = pick_mode(opts, layers)
    spec, chunk = check_args(mode, opts.chunk)
    lengths = opts.lengths_for(spec)
    x = fit_example(example, chunk)
    mem_names, mem = check_memory(memory, example, x, offline)
    refuse_layers(layers, spec, opts)
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

    graph = Graph(
        adapter=adapter,
        mode=mode,
        backend=backend,
        takes_lengths=takes_lengths,
        wire_lengths=wire,
        states=list(zip(keys, axes, init_states, inits)),
        memory=list(zip(mem_names, mem)),
        outputs=list(zip(out_names, probed)),
        facts=_facts(facts, layers, x, mode, chunk, opts, adapter.streamed(), mode_note),
        preprocessing=preprocessing or Preprocessing(),
    )
    extra: dict[str, Any] = {}
    if chunk and chunk > 1 and not offline:  # calls shorter than the chunk run this instead
        step_path = sibling_path(path, "step")
        step = write_graph(
            graph, x[:, :1], 1, step_path, {"role": "step", "chunk_model": Path(path).name}
        )
        extra["step_model"] = {
            "file": step_path.name,
            "weights_sha256": step.producer["weights_sha256"],
        }
    contract = write_graph(graph, x[:, :chunk] if chunk else x, chunk, Path(path), extra)
    if chunk is None:  # a Python loop over time may have fixed the traced frame count
        states = [*init_states, *mem]  # memory rides after the states, as the graph takes it
        note = one_step_note(Path(path), run_states, x, states, offline, mode_note)
        if note:  # the graph is one step of the loop, as for a cell loop
            contract = write_graph(graph, x[:, :1], 1, Path(path), {**extra, "mode_note": note})
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
    opts: ExportOptions,
    streamed: list[dict[str, Any]],
    mode_note: str | None,
) -> ModelFacts:
    base = base or ModelFacts()
    offline = opts.offline
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
            "backend": opts.backend,
            "example_time": int(x.shape[1]),
            "layers": [dataclasses.asdict(i) for i in layers],
            "streamed": streamed,  # how each module streams: style, path, carried state
            **({"mode_note": mode_note} if mode_note else {}),
            # an offline fixed-chunk graph sees one whole sequence per call: at most `chunk`
            **({"max_frames_per_call": chunk} if offline and chunk else {}),
        },
    )
