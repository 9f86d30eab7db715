"""ONNX-side steps of an export: run torch.onnx, wire lengths, attach the contract, check."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import onnx
import onnx.numpy_helper
import torch

from edgeseq.contract import METADATA_KEY, Contract, GraphIO
from edgeseq.errors import ExportError, ModelLoadError

__all__ = [
    "RECURRENT_OPS",
    "Backend",
    "attach_contract",
    "graph_io",
    "keep_idle_state",
    "op_histogram",
    "read_contract",
    "torch_to_onnx",
    "wire_lengths",
]

Backend = Literal["torchscript", "dynamo"]
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"})
OPSET = 17

_ELEM = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8",
}


def torch_to_onnx(
    module: torch.nn.Module,
    args: tuple[torch.Tensor | None, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    backend: Backend = "torchscript",
) -> onnx.ModelProto:
    """Export ``module(*args)`` and return the ONNX model (not yet saved).

    ``torchscript`` (torch.onnx's legacy tracer) keeps nn.RNN/LSTM/GRU as native nodes with
    symbolic batch and time. ``dynamo`` (torch.export) keeps LSTM/GRU native but decomposes
    nn.RNN into a fixed-length loop, so it is refused for RNN layers by the caller.
    """
    buf = io.BytesIO()
    out, err = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with warnings.catch_warnings(), out, err, torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            if backend == "torchscript":
                torch.onnx.export(
                    module,
                    args,
                    buf,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=dynamic_axes,
                    opset_version=OPSET,
                    dynamo=False,
                    do_constant_folding=True,
                )
            elif backend == "dynamo":
                dims: dict[str, torch.export.Dim] = {}
                shapes = []
                for name, arg in zip(input_names, args):
                    if arg is None:
                        shapes.append(None)
                        continue
                    axes = dynamic_axes.get(name, {})
                    shapes.append(
                        {
                            ax: dims.setdefault(sym, torch.export.Dim(sym, min=1))
                            for ax, sym in axes.items()
                        }
                        or None
                    )
                # StreamAdapter.forward(x, *rest): varargs take a nested entry
                dyn_shapes = (shapes[0], tuple(shapes[1:])) if len(shapes) > 1 else tuple(shapes)
                prog = torch.onnx.export(
                    module,
                    args,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_shapes=dyn_shapes,
                    dynamo=True,
                    optimize=True,
                    verbose=False,
                )
                prog.save(buf)
            else:
                raise ExportError(f"backend must be 'torchscript' or 'dynamo', got {backend!r}")
        except ExportError:
            raise
        except Exception as exc:  # torch raises many kinds; say which step failed
            raise ExportError(
                f"torch.onnx ({backend}) could not export the model: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Try the other backend "
                "(--backend torchscript|dynamo) or --mode unrolled."
            ) from exc
    proto = onnx.load_from_string(buf.getvalue())
    _name_dims(proto, dynamic_axes, output_names)
    return proto


def _name_dims(
    proto: onnx.ModelProto, axes: dict[str, dict[int, str]], output_names: Sequence[str]
) -> None:
    """Give declared dynamic axes their names on inputs and outputs (dynamo leaves s0, s1...)."""
    for vi in list(proto.graph.input) + list(proto.graph.output):
        for ax, sym in axes.get(vi.name, {}).items():
            dims = vi.type.tensor_type.shape.dim
            if ax < len(dims):
                dims[ax].Clear()
                dims[ax].dim_param = sym
    # dynamo may also annotate outputs with the example's static size: drop stale value_info
    del proto.graph.value_info[:]


def wire_lengths(proto: onnx.ModelProto, name: str = "lengths") -> int:
    """Add a ``(batch,)`` int32 input and feed it to every recurrent node's ``sequence_lens``.

    Returns the number of nodes wired. ONNX recurrent ops then stop each row after its
    valid frames and report that row's last valid state in ``Y_h``/``Y_c``, which is how
    streams with different numbers of frames share one batched call.
    """
    wired = 0
    for node in proto.graph.node:
        if node.op_type in ("LSTM", "GRU", "RNN"):
            while len(node.input) < 5:
                node.input.append("")
            node.input[4] = name
            wired += 1
    if wired and name not in {i.name for i in proto.graph.input}:
        proto.graph.input.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT32, ["batch"])
        )
    return wired


def keep_idle_state(
    proto: onnx.ModelProto,
    lengths: str,
    pairs: Sequence[tuple[str, str]],
    layouts: Sequence[tuple[int, int]] | None = None,
) -> None:
    """Make a row with ``lengths == 0`` leave its state unchanged.

    onnxruntime's recurrent ops return zeros in ``Y_h``/``Y_c`` for a row whose
    ``sequence_lens`` is 0, which would reset a stream that has no frames in a batched
    call (a pool stepping only some of its streams, or the tail of a longer row). Each
    ``(state input, state output)`` pair becomes ``Where(lengths > 0, new state, state
    input)``. ``layouts`` gives each pair's ``(batch axis, rank)``; by default ``(1, 3)``,
    the recurrent layers' ``(layers*dirs, batch, size)``.
    """
    h = onnx.helper
    nodes = [
        h.make_node(
            "Constant",
            [],
            ["edgeseq_zero_i32"],
            value=h.make_tensor("zero", onnx.TensorProto.INT32, [], [0]),
        ),
        h.make_node("Greater", [lengths, "edgeseq_zero_i32"], ["edgeseq_lengths_gt0"]),
    ]
    masks: dict[tuple[int, int], str] = {}
    for (s_in, s_out), (axis, rank) in zip(pairs, layouts or [(1, 3)] * len(pairs)):
        if (axis, rank) not in masks:  # lengths > 0 shaped to broadcast over this layout
            others = [i for i in range(rank) if i != axis]
            name = (
                "edgeseq_row_has_frames"
                if (axis, rank) == (1, 3)
                else (f"edgeseq_row_has_frames_{axis}_{rank}")
            )
            axes_name = f"edgeseq_axes_{'_'.join(map(str, others))}"
            nodes.append(
                h.make_node(
                    "Constant",
                    [],
                    [axes_name],
                    value=h.make_tensor("axes", onnx.TensorProto.INT64, [len(others)], others),
                )
            )
            nodes.append(h.make_node("Unsqueeze", ["edgeseq_lengths_gt0", axes_name], [name]))
            masks[(axis, rank)] = name
        raw = f"{s_out}.raw"
        for node in proto.graph.node:
            for i, name in enumerate(node.output):
                if name == s_out:
                    node.output[i] = raw
            for i, name in enumerate(node.input):
                if name == s_out:
                    node.input[i] = raw
        nodes.append(h.make_node("Where", [masks[(axis, rank)], raw, s_in], [s_out]))
    proto.graph.node.extend(nodes)


def graph_io(proto: onnx.ModelProto) -> tuple[list[GraphIO], list[GraphIO]]:
    """Inputs (without initializers) and outputs as :class:`GraphIO` records."""
    inits = {t.name for t in proto.graph.initializer}

    def rec(vi: onnx.ValueInfoProto) -> GraphIO:
        tt = vi.type.tensor_type
        shape = [
            d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in tt.shape.dim
        ]
        return GraphIO(vi.name, shape, _ELEM.get(tt.elem_type, str(tt.elem_type)))

    ins = [rec(v) for v in proto.graph.input if v.name not in inits]
    return ins, [rec(v) for v in proto.graph.output]


def op_histogram(proto: onnx.ModelProto) -> dict[str, int]:
    """Count of each op type in the main graph and its subgraphs."""
    counts: collections.Counter[str] = collections.Counter()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(proto.graph)
    return dict(counts.most_common())


def attach_contract(proto: onnx.ModelProto, contract: Contract) -> Contract:
    """Check ``contract`` against the graph, then store it in ``metadata_props``.

    The producer record gets a digest of the weights, so the contract hash (which
    snapshots carry) tells two models of the same shape but different training apart.
    """
    ins, outs = graph_io(proto)
    contract.check_graph(ins, outs)
    contract = dataclasses.replace(
        contract, producer={**contract.producer, "weights_sha256": weights_digest(proto)}
    )
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    onnx.helper.set_model_props(
        proto, {**{p.key: p.value for p in proto.metadata_props}, METADATA_KEY: contract.to_json()}
    )
    return contract


def read_contract(path: str | Path) -> Contract:
    """The contract stored in an ONNX file's metadata (read with onnx, weights not loaded).

    Raises
    ------
    ModelLoadError
        The file is missing, a folder, or not an ONNX model.
    """
    where = Path(path)
    if not where.is_file():
        state = "is a folder" if where.is_dir() else "does not exist"
        raise ModelLoadError(
            f"model file {str(path)!r} {state}; expected an exported .onnx file. Check the "
            "path, or export one with `edgeseq export CHECKPOINT -o MODEL.onnx`."
        )
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, onnx's own errors, ...
        raise ModelLoadError(
            f"{path} is not an ONNX model (onnx could not parse it: "
            f"{type(exc).__name__}: {str(exc)[:200]}); it may be truncated or another kind "
            "of file: re-export it."
        ) from None
    return Contract.from_metadata({p.key: p.value for p in proto.metadata_props}, str(path))


def weights_digest(proto: onnx.ModelProto) -> str:
    """A short SHA-256 over every initializer's name, type, shape and bytes."""
    import hashlib

    digest = hashlib.sha256()
    for t in sorted(proto.graph.initializer, key=lambda t: t.name):
        arr = onnx.numpy_helper.to_array(t)
        digest.update(f"{t.name}|{arr.dtype}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()[:16]


def save_checked(proto: onnx.ModelProto, path: str | Path) -> Path:
    """Run onnx's checker (with shape inference) and write the file."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected the exported graph: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path
