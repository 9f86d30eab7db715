"""The onnxruntime-backend graph: a streaming model rewired the way Triton drives it.

Triton's sequence batcher keeps each sequence's state itself ("implicit state") and
batches several sequences into one call. With ``max_batch_size > 0`` it stacks state on
the FIRST axis, while edgeseq's contract keeps recurrent state ``(layers, batch, hidden)``.
:func:`triton_variant` therefore rewrites a streaming model at its edges, leaving the
recurrent core untouched::

    x (batch, time, F)  ->  (x - mean) / std  [-> zero-pad to the chunk]  -> core
    START (batch, 1)       state = START ? initial : state_in      (batch-first, per row)
    state_in  (batch, layers, hidden) -> transpose -> core -> transpose -> state_out
    READY (batch, 1)       state_out = READY ? new : state          (direct strategy only)
    core -> y [-> first T frames] -> y * out_std + out_mean -> y (batch-first)

The ``lengths`` input is computed from ``x`` (Triton batches only requests of equal
shape, so every row holds the same number of valid frames), and constant inputs are
baked in. On the first request Triton feeds uninitialised (or zero) state: START makes
the graph start from the contract's initial value, which need not be zero.

Conditioned decoders (``one_to_many``, ``seq2seq``) take their first state from another
graph: :func:`init_variant` turns the bridge (condition -> state) or the encoder (source
tokens -> final state) into a stateless model whose outputs ``init.<state input>``
(batch-first) the decoder reads on START rows.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import onnx

from edgeseq.contract import Contract, Preprocessing, StatePair, TensorSpec
from edgeseq.errors import ExportError
from edgeseq.exporters.triton._onnxgraph import Editor, value_info

__all__ = ["CONTROLS", "Strategy", "init_input_name", "init_variant", "triton_variant"]

Strategy = Literal["oldest", "direct"]
# control input -> (Triton control kind, what the graph does with it)
CONTROLS = {
    "START": ("CONTROL_SEQUENCE_START", "rows starting a sequence use the initial state"),
    "READY": ("CONTROL_SEQUENCE_READY", "rows without a request keep their state"),
}


def init_input_name(state_input: str) -> str:
    """The decoder input carrying a conditioned sequence's first state, read on START."""
    return f"init.{state_input}"


def _bf_shape(shape: Sequence[Any], axis: int) -> list[Any]:
    """``shape`` with its batch axis moved first."""
    return [shape[axis], *(d for i, d in enumerate(shape) if i != axis)]


def _perm(rank: int, axis: int) -> list[int]:
    return [axis, *(i for i in range(rank) if i != axis)]


def _inverse(perm: list[int]) -> list[int]:
    return [perm.index(i) for i in range(len(perm))]


def _check_supported(c: Contract, what: str) -> None:
    if c.model.extra.get("context"):
        raise ExportError(
            f"{what} prepends {c.model.extra['context']} frames of left context on every call; "
            "the onnxruntime-backend graph cannot carry them yet. Use --backend python (the "
            "StreamPool runtime carries context)."
        )
    if (c.frames.batch_axis, c.frames.time_axis) not in ((0, 1), (1, 0)):
        raise ExportError(
            f"{what}: expected frames shaped (batch, time, ...) or (time, batch, ...), got "
            f"batch axis {c.frames.batch_axis} and time axis {c.frames.time_axis}. Re-export "
            "the model with edgeseq."
        )
    for o in c.data_outputs():
        if o.batch_axis is None:
            raise ExportError(
                f"{what}: output {o.name!r} has no batch axis, so Triton cannot split a "
                "batched call into per-request responses. Re-export with a batched output."
            )


class _Rewriter:
    """One pass over a copy of a streaming graph (see the module docstring)."""

    def __init__(self, proto: onnx.ModelProto, c: Contract) -> None:
        self.e = Editor(copy.deepcopy(proto))
        self.c = c
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._parts: tuple[str, str, str] | None = None

    def bake_constants(self, constants: Mapping[str, Any] | None) -> None:
        given = dict(constants or {})
        missing = [n for n in self.c.constants if n not in given]
        if missing:
            raise ExportError(
                f"the model needs constant inputs {missing} on every call; expected their "
                "values in constants={name: value}, which are baked into the Triton graph."
            )
        graph_in = {vi.name: vi for vi in self.e.graph.input}
        for name in self.c.constants:
            elem = graph_in[name].type.tensor_type.elem_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
            self.e.bake(name, np.asarray(given[name], dtype=dtype))

    def shape_parts(self) -> tuple[str, str, str]:
        """The frames' ``batch``, ``time`` (1-D, one element) and trailing dims, int64."""
        if self._parts is None:
            e, ints = self.e, self.e.ints
            shape = e.node("Shape", [self.c.frames.name])
            self._parts = (
                e.node("Slice", [shape, ints([0]), ints([1])]),
                e.node("Slice", [shape, ints([1]), ints([2])]),
                e.node("Slice", [shape, ints([2]), ints([2**62])]),
            )
        return self._parts

    def frames(self, prep: Preprocessing, chunk: int | None) -> str | None:
        """Wire the frames input; return the 1-D time tensor when outputs need trimming."""
        f = self.c.frames
        internal = self.e.take_input(f.name)
        cur = f.name
        if f.dtype.startswith("float"):
            if prep.mean is not None:
                cur = self.e.node("Sub", [cur, self.e.const(prep.mean, f.dtype, "mean")])
            if prep.std is not None:
                cur = self.e.node("Div", [cur, self.e.const(prep.std, f.dtype, "std")])
        batch, time, rest = self.shape_parts()
        trim = None
        if chunk:
            # zero frames up to the graph's fixed chunk; more frames than the chunk make
            # ConstantOfShape fail on a negative size instead of being dropped silently
            pad = self.e.node("Sub", [self.e.ints([chunk]), time])
            dims = self.e.node("Concat", [batch, pad, rest], axis=0)
            zero = onnx.numpy_helper.from_array(np.zeros(1, dtype=f.dtype), "zero")
            zeros = self.e.node("ConstantOfShape", [dims], value=zero)
            cur = self.e.node("Concat", [cur, zeros], axis=1)
            trim = time
        if f.batch_axis == 1:  # the core takes frames time-major (the op's layout)
            rank = len(f.shape)
            cur = self.e.node("Transpose", [cur], perm=[1, 0, *range(2, rank)])
        self.e.node("Identity", [cur], internal)
        shape = ["batch", "time", *f.shape[2:]]
        self.inputs.append(value_info(f.name, f.dtype, shape))
        if self.c.lengths is not None:
            self.e.remove_input(self.c.lengths)
            t32 = self.e.node("Cast", [time], to=onnx.TensorProto.INT32)
            self.e.node("Expand", [t32, batch], self.c.lengths)  # (batch,) all rows full
        return trim

    def data_outputs(self, prep: Preprocessing, trim: str | None) -> list[TensorSpec]:
        specs = []
        for k, o in enumerate(self.c.data_outputs()):
            cur = self.e.take_output(o.name)
            shape = list(o.shape)
            t_axis = o.time_axis
            if trim is not None and t_axis is not None:
                cur = self.e.node("Slice", [cur, self.e.ints([0]), trim, self.e.ints([t_axis])])
                shape[t_axis] = "time"
            if k == 0 and o.dtype.startswith("float"):  # the runtime scales the first output
                if prep.out_std is not None:
                    cur = self.e.node("Mul", [cur, self.e.const(prep.out_std, o.dtype, "ostd")])
                if prep.out_mean is not None:
                    cur = self.e.node("Add", [cur, self.e.const(prep.out_mean, o.dtype, "omu")])
            b = o.batch_axis
            assert b is not None  # _check_supported
            if b != 0:
                cur = self.e.node("Transpose", [cur], perm=_perm(len(shape), b))
                shape = _bf_shape(shape, b)
                if t_axis is not None:
                    t_axis = t_axis + 1 if t_axis < b else t_axis
            self.e.node("Identity", [cur], o.name)
            self.outputs.append(value_info(o.name, o.dtype, shape))
            specs.append(TensorSpec(o.name, shape, o.dtype, 0, t_axis))
        return specs

    def control(self, name: str) -> str:
        """A ``(batch, 1)`` int32 control input; returns it as a bool ``(batch, 1)`` tensor."""
        self.inputs.append(value_info(name, "int32", ["batch", 1]))
        return self.e.node("Cast", [name], to=onnx.TensorProto.BOOL)

    def states(
        self, start: str, ready: str | None, seeded: bool
    ) -> tuple[list[StatePair], list[TensorSpec]]:
        pairs, seeds = [], []
        for s in self.c.states:
            rank, b = len(s.shape), s.batch_axis
            perm = _perm(rank, b)
            bf = _bf_shape(s.shape, b)
            row_mask = self.e.ints([-1] + [1] * (rank - 1))
            start_r = self.e.node("Reshape", [start, row_mask])  # (batch, 1, ..., 1)
            if seeded:
                init = init_input_name(s.input)
                self.inputs.append(value_info(init, s.dtype, bf))
                seeds.append(TensorSpec(init, bf, s.dtype, 0, None))
            else:
                one = [1 if isinstance(d, str) else d for d in s.shape]
                value = (
                    np.zeros(one) if s.init == "zeros" else np.asarray(s.init).reshape(one)
                ).transpose(perm)
                init = self.e.const(value, s.dtype, "init")  # (1, ...): broadcast over rows
            internal = self.e.take_input(s.input)
            used = self.e.node("Where", [start_r, init, s.input])  # (batch, ...)
            self.e.node("Transpose", [used], internal, perm=_inverse(perm))
            self.inputs.append(value_info(s.input, s.dtype, bf))
            new = self.e.take_output(s.output)
            if ready is None:
                self.e.node("Transpose", [new], s.output, perm=perm)
            else:
                ready_r = self.e.node("Reshape", [ready, row_mask])
                new_bf = self.e.node("Transpose", [new], perm=perm)
                self.e.node("Where", [ready_r, new_bf, used], s.output)
            self.outputs.append(value_info(s.output, s.dtype, bf))
            # each part of a state is a Triton state of its own: no stacking in the variant
            pairs.append(dataclasses.replace(s, shape=bf, batch_axis=0, part_of=None))
        return pairs, seeds

    def finish(self) -> onnx.ModelProto:
        self.e.set_io(self.inputs, self.outputs)
        return self.e.proto


def _variant_facts(c: Contract, **triton: Any):
    extra = {**c.model.extra, "triton": {"source_contract": c.hash(), **triton}}
    return dataclasses.replace(c.model, chunk=None, extra=extra)


def triton_variant(
    proto: onnx.ModelProto,
    contract: Contract,
    strategy: Strategy = "oldest",
    *,
    constants: Mapping[str, Any] | None = None,
    seeded: bool = False,
) -> tuple[onnx.ModelProto, Contract]:
    """Rewrite a streaming model for Triton's onnxruntime backend; return it and its contract.

    ``strategy="direct"`` adds the READY control (rows of idle batch slots keep their
    state); ``oldest`` batches only ready requests, so it needs START alone. ``seeded``
    adds an ``init.<state input>`` input per state, the first state of a conditioned
    decoder, read on START rows instead of the contract's initial value. A stateless
    (offline) model gets no controls. The recurrent core is not changed.
    """
    c = contract
    _check_supported(c, "this model")
    if strategy not in ("oldest", "direct"):
        raise ExportError(f"strategy must be 'oldest' or 'direct', got {strategy!r}")
    r = _Rewriter(proto, c)
    r.bake_constants(constants)
    chunk = c.model.chunk if c.lengths is not None else None
    trim = r.frames(c.preprocessing, chunk)
    data = r.data_outputs(c.preprocessing, trim)
    controls: dict[str, str] = {}
    pairs: list[StatePair] = []
    seeds: list[TensorSpec] = []
    if c.model.stateful and c.states:
        start = r.control("START")
        controls["START"] = CONTROLS["START"][0]
        ready = None
        if strategy == "direct":
            ready = r.control("READY")
            controls["READY"] = CONTROLS["READY"][0]
        pairs, seeds = r.states(start, ready, seeded)
    out = r.finish()
    frames = c.frames  # Triton's frames are batch-first whatever the core takes
    time = frames.shape[frames.time_axis] if chunk is None else "time"  # type: ignore[index]
    frames = dataclasses.replace(
        frames, shape=["batch", time, *frames.shape[2:]], batch_axis=0, time_axis=1
    )
    control_specs = [TensorSpec(n, ["batch", 1], "int32", 0, None) for n in controls]
    variant = Contract(
        inputs=[frames, *control_specs, *seeds],
        outputs=[*data, *(TensorSpec(p.output, p.shape, p.dtype, 0, None) for p in pairs)],
        states=pairs,
        lengths=None,
        constants=[],
        model=_variant_facts(
            c,
            backend="onnxruntime",
            strategy=strategy,
            controls=controls,
            max_frames_per_request=chunk or c.model.extra.get("max_frames_per_call"),
        ),
        preprocessing=Preprocessing(vocab=c.preprocessing.vocab),
        producer=dict(c.producer),
    )
    return out, variant


def init_variant(
    proto: onnx.ModelProto, contract: Contract, decoder: Contract
) -> tuple[onnx.ModelProto, Contract]:
    """The stateless graph that makes a conditioned decoder's first state, batch-first.

    ``contract`` is the init model's: a one-to-many bridge (``condition -> state``) or a
    seq2seq encoder (a streaming graph run over the whole source from its initial state;
    its final state is the decoder's first). Outputs are named ``init.<decoder state>``.
    """
    want = decoder.states
    r = _Rewriter(proto, contract)
    if contract.states:  # an encoder: run from the initial state, output only the final one
        _check_supported(contract, "the encoder")
        if contract.model.chunk:
            raise ExportError(
                "the encoder is a fixed-chunk (unrolled) graph, which cannot read a whole "
                "source in one call; export the seq2seq model with mode 'native' for the "
                "onnxruntime backend, or use --backend python."
            )
        if len(contract.states) != len(want):
            raise ExportError(
                f"the encoder carries {len(contract.states)} states, the decoder "
                f"{len(want)}; expected one encoder state per decoder state."
            )
        r.bake_constants(None)
        r.frames(contract.preprocessing, None)
        batch = r.shape_parts()[0]
        for s in contract.states:
            internal = r.e.take_input(s.input)
            one = [1 if isinstance(d, str) else d for d in s.shape]
            value = np.zeros(one) if s.init == "zeros" else np.asarray(s.init).reshape(one)
            dims = [r.e.ints([d]) if isinstance(d, int) else batch for d in s.shape]
            full = r.e.node("Concat", dims, axis=0)
            r.e.node("Expand", [r.e.const(value, s.dtype, "init"), full], internal)
        for o in contract.data_outputs():
            r.e.take_output(o.name)  # the encoder's per-frame outputs are not needed
        sources = [(s.output, s) for s in contract.states]
    else:  # a bridge: outputs named as the decoder's state inputs, (layers, batch, hidden)
        spec = contract.inputs[0]
        r.inputs.append(value_info(spec.name, spec.dtype, spec.shape))
        sources = [(o.name, o) for o in contract.outputs]
    outputs = []
    for (name, src), dst in zip(sources, want):
        if [d for d in src.shape if isinstance(d, int)] != [
            d for d in dst.shape if isinstance(d, int)
        ]:
            raise ExportError(
                f"init model output {name!r} has shape {src.shape}; the decoder's state "
                f"{dst.input!r} is {dst.shape}. Export the pair together (export_model)."
            )
        cur = r.e.take_output(name)
        axis = src.batch_axis
        assert axis is not None
        bf = _bf_shape(dst.shape, dst.batch_axis)
        out = init_input_name(dst.input)
        r.e.node("Transpose", [cur], out, perm=_perm(len(src.shape), axis))
        r.outputs.append(value_info(out, dst.dtype, bf))
        outputs.append(TensorSpec(out, bf, dst.dtype, 0, None))
    proto_out = r.finish()
    source = contract.frames if contract.states else contract.inputs[0]
    if contract.states:
        shape = ["batch", "time", *source.shape[2:]]
        source = dataclasses.replace(source, shape=shape, batch_axis=0, time_axis=1)
    variant = Contract(
        inputs=[source],
        outputs=outputs,
        model=dataclasses.replace(
            _variant_facts(contract, backend="onnxruntime", role="init"), stateful=False
        ),
        preprocessing=Preprocessing(vocab=contract.preprocessing.vocab),
        producer=dict(contract.producer),
    )
    return proto_out, variant
