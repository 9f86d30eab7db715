"""Graph edges in the recurrent op's own layout, recorded in the contract.

torch.onnx writes a batch-first module with stacked ``(layers, batch, hidden)`` state as
the ONNX recurrent ops do not take it, so every call pays for converting at the edges::

    x (batch, time, F) -> Transpose -> LSTM_0 -> Squeeze -> LSTM_1 -> ...
    state_in.h (2, batch, H) -> Slice [0:1] -> LSTM_0.initial_h
                             -> Slice [1:2] -> LSTM_1.initial_h
    LSTM_0.Y_h, LSTM_1.Y_h -> Concat -> state_out.h (2, batch, H)

For one frame those nodes cost as much as a recurrent op (onnxruntime runs each as a
kernel). :func:`to_op_layout` moves the conversions out of the graph, where the contract
allows it and the runtime adapts (``runtime/_views.py``, ``GraphLayout``):

- **state in parts**: a state input read only as slices along axis 0 (``Slice``, ``Split``,
  or ``Gather`` of one index, as the unrolled cells read it) whose output is a ``Concat``
  along axis 0 becomes one pair per slice, each as its op reads and writes it
  (``state_in.<path>.h.l0`` ``(1, batch, H)``); the contract's ``part_of`` names the
  state a user sees, and the runtime stacks the parts back at its edges;
- **time-major frames**: a frames input read only through a ``Transpose`` swapping batch
  and time is taken time-major instead (``(time, batch, F)``, the contract's axes say
  so). Outputs keep the layout the module gives them (verification compares them with
  PyTorch's as they are).

Anything else is left as it is: a graph whose pattern is not recognised keeps its
batch-first, stacked edges (correct, only slower). The rewrites remove nodes and rename
tensors; they add nothing but a ``Squeeze`` (an alias in onnxruntime) where a part
replaces a ``Gather``, so an unrolled graph still holds basic ops only.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import helper

from edgeseq.contract import StatePair

__all__ = ["OpLayout", "part_name", "to_op_layout"]


def part_name(name: str, k: int) -> str:
    """The graph tensor of part ``k`` of state ``name``: ``state_in.rnn.h`` -> ``…h.l0``."""
    return f"{name}.l{k}"


@dataclass(frozen=True)
class OpLayout:
    """The edges of a graph after :func:`to_op_layout`, for its contract."""

    time_major: bool  # the frames input is (time, batch, ...)
    states: list[StatePair]  # parts replace a split state, in its place


def to_op_layout(proto: onnx.ModelProto, frames: str, states: Sequence[StatePair]) -> OpLayout:
    """Rewrite ``proto``'s edges in place (see the module doc); return what they became."""
    g = _Graph(proto)
    new_states: list[StatePair] = []
    for pair in states:
        new_states.extend(_split_state(g, pair) or [pair])
    time_major = _drop_frames_transpose(g, frames)
    g.drop_unused_constants()
    return OpLayout(time_major, new_states)


class _Graph:
    """Lookups over one graph's nodes, refreshed after each rewrite."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        self.g = proto.graph
        self._shapes: dict[str, list[int | str | None]] | None = None

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.g.node if name in n.input]

    def producer(self, name: str) -> onnx.NodeProto | None:
        return next((n for n in self.g.node if name in n.output), None)

    def is_graph_io(self, name: str) -> bool:
        return any(v.name == name for v in (*self.g.input, *self.g.output)) or any(
            t.name == name for t in self.g.initializer
        )

    def names(self) -> set[str]:
        found = {v.name for v in (*self.g.input, *self.g.output, *self.g.initializer)}
        for n in self.g.node:
            found.update(n.input)
            found.update(n.output)
        return found

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor (an initializer or a Constant node's output)."""
        for t in self.g.initializer:
            if t.name == name:
                return onnx.numpy_helper.to_array(t)
        node = self.producer(name)
        if node is None or node.op_type != "Constant":
            return None
        for a in node.attribute:
            if a.name == "value":
                return onnx.numpy_helper.to_array(a.t)
            if a.name == "value_ints":
                return np.array(a.ints, np.int64)
            if a.name == "value_int":
                return np.array(a.i, np.int64)
        return None

    def dim0(self, name: str) -> int | None:
        """Axis 0 of ``name``'s inferred shape, when it is a fixed size."""
        if self._shapes is None:
            inferred = onnx.shape_inference.infer_shapes(self.proto)
            self._shapes = {}
            for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
                dims = vi.type.tensor_type.shape.dim
                self._shapes[vi.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims
                ]
        shape = self._shapes.get(name)
        return shape[0] if shape and isinstance(shape[0], int) else None

    def rename(self, old: str, new: str) -> None:
        """Every use and definition of tensor ``old`` (nodes and graph outputs) becomes ``new``."""
        for n in self.g.node:
            for seq in (n.input, n.output):
                for i, v in enumerate(seq):
                    if v == old:
                        seq[i] = new
        for v in self.g.output:
            if v.name == old:
                v.name = new
        self._shapes = None

    def remove(self, node: onnx.NodeProto) -> None:
        self.g.node.remove(node)
        self._shapes = None

    def drop_unused_constants(self) -> None:
        used = {v for n in self.g.node for v in n.input} | {v.name for v in self.g.output}
        for n in [n for n in self.g.node if n.op_type == "Constant" and n.output[0] not in used]:
            self.g.node.remove(n)


def _attr(node: onnx.NodeProto, name: str, default: int | None = None) -> int | None:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _reads(
    g: _Graph, node: onnx.NodeProto, state: str, total: int
) -> list[tuple[str, int, int, bool]] | None:
    """The slices of ``state`` a consumer reads along axis 0: ``(tensor, start, stop,
    squeezed)`` per output, or None when it reads the state another way."""
    if node.input[0] != state or state in node.input[1:]:
        return None
    if node.op_type == "Slice":
        starts, ends = g.const(node.input[1]), g.const(node.input[2])
        axes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros(1)
        steps = g.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(1)
        if any(v is None or v.size != 1 for v in (starts, ends, axes, steps)):
            return None
        if int(axes.item()) != 0 or int(steps.item()) != 1:  # type: ignore[union-attr]
            return None
        start, stop = (int(v.item()) for v in (starts, ends))  # type: ignore[union-attr]
        start, stop = (min(max(v + total if v < 0 else v, 0), total) for v in (start, stop))
        return [(node.output[0], start, stop, False)]
    if node.op_type == "Gather" and _attr(node, "axis", 0) == 0:
        index = g.const(node.input[1])
        if index is None or index.size != 1:
            return None
        k = int(index.item())
        k = k + total if k < 0 else k
        return [(node.output[0], k, k + 1, index.ndim == 0)]
    if node.op_type == "Split" and _attr(node, "axis", 0) == 0:
        sizes = g.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if sizes is None:
            n = len(node.output)
            if total % n:
                return None
            sizes = np.full(n, total // n)
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        return [(o, int(a), int(b), False) for o, a, b in zip(node.output, bounds, bounds[1:])]
    return None


def _split_state(g: _Graph, pair: StatePair) -> list[StatePair] | None:
    """``pair`` as parts along axis 0, each as the recurrent ops read and write it, or
    None (graph unchanged) when its reads and its write are not per-part slices."""
    total = pair.shape[0] if pair.shape else None
    if not isinstance(total, int) or total < 2 or pair.batch_axis == 0:
        return None
    write = g.producer(pair.output)
    if (
        write is None
        or write.op_type != "Concat"
        or _attr(write, "axis") not in (0, -len(pair.shape))
    ):
        return None
    if g.consumers(pair.output) or len(set(write.input)) != len(write.input):
        return None
    sources = list(write.input)
    sizes = [g.dim0(s) for s in sources]
    if any(s is None for s in sizes) or sum(sizes) != total:  # type: ignore[arg-type]
        return None
    if any(g.is_graph_io(s) for s in sources):
        return None
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
    ranges = list(itertools.pairwise(bounds))
    readers = g.consumers(pair.input)
    reads = [(node, _reads(g, node, pair.input, total)) for node in readers]
    if not readers or any(r is None for _, r in reads):
        return None
    for _, r in reads:
        for _, start, stop, squeezed in r:  # type: ignore[union-attr]
            if (start, stop) not in ranges or (squeezed and stop - start != 1):
                return None
    taken = g.names()
    ins = [part_name(pair.input, k) for k in range(len(ranges))]
    outs = [part_name(pair.output, k) for k in range(len(ranges))]
    if taken & set(ins + outs):
        return None
    # ---- rewrite: the parts become graph inputs and outputs, the slicing nodes go
    in_vi = next(v for v in g.g.input if v.name == pair.input)
    out_vi = next(v for v in g.g.output if v.name == pair.output)
    for node, r in reads:
        g.remove(node)
        for tensor, start, stop, squeezed in r:  # type: ignore[union-attr]
            part = ins[ranges.index((start, stop))]
            if squeezed:  # a Gather of one index: the part without its axis 0
                axes = f"{tensor}.axes"
                g.g.node.extend(
                    [
                        helper.make_node(
                            "Constant",
                            [],
                            [axes],
                            value=helper.make_tensor(axes, onnx.TensorProto.INT64, [1], [0]),
                        ),
                        helper.make_node("Squeeze", [part, axes], [tensor]),
                    ]
                )
            else:
                g.rename(tensor, part)
    g.remove(write)
    for src, name in zip(sources, outs):
        g.rename(src, name)
    _replace_io(g.g.input, in_vi, ins, sizes)
    _replace_io(g.g.output, out_vi, outs, sizes)
    _topological(g.g)
    init = _split_init(pair, sizes)  # type: ignore[arg-type]
    return [
        dataclasses.replace(
            pair, input=i, output=o, shape=[n, *pair.shape[1:]], init=v, part_of=pair.input
        )
        for i, o, n, v in zip(ins, outs, sizes, init)
    ]


def _replace_io(
    seq, old: onnx.ValueInfoProto, names: list[str], sizes: Sequence[int | None]
) -> None:
    """Put one value info per part where ``old`` was in ``seq`` (graph inputs or outputs)."""
    at = list(seq).index(old)
    parts = []
    for name, n in zip(names, sizes):
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(old)
        vi.name = name
        dim = vi.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = int(n)  # type: ignore[arg-type]
        parts.append(vi)
    rest = list(seq)
    del seq[:]
    seq.extend(rest[:at] + parts + rest[at + 1 :])


def _split_init(pair: StatePair, sizes: Sequence[int]) -> list[str | list[float]]:
    if pair.init == "zeros":
        return ["zeros"] * len(sizes)
    one = [1 if isinstance(d, str) else d for d in pair.shape]
    arr = np.asarray(pair.init, np.float64).reshape(one)
    cuts = np.cumsum(sizes)[:-1]
    return [p.ravel().tolist() for p in np.split(arr, cuts, axis=0)]


def _topological(graph: onnx.GraphProto) -> None:
    """Order nodes so each comes after what it reads (a Squeeze appended for a part)."""
    known = {v.name for v in (*graph.input, *graph.initializer)} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or an outer-scope name: keep the rest as it was
            ordered.extend(pending)
            break
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _swaps_leading(node: onnx.NodeProto, rank: int) -> bool:
    perm = list(_attr_list(node, "perm"))
    return perm == [1, 0, *range(2, rank)]


def _attr_list(node: onnx.NodeProto, name: str) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == name), [])


def _swap_dims(vi: onnx.ValueInfoProto) -> None:
    dims = vi.type.tensor_type.shape.dim
    a, b = onnx.TensorShapeProto.Dimension(), onnx.TensorShapeProto.Dimension()
    a.CopyFrom(dims[0])
    b.CopyFrom(dims[1])
    dims[0].CopyFrom(b)
    dims[1].CopyFrom(a)


def _drop_frames_transpose(g: _Graph, frames: str) -> bool:
    """Take ``frames`` time-major when its only reader swaps batch and time."""
    vi = next((v for v in g.g.input if v.name == frames), None)
    readers = g.consumers(frames)
    if vi is None or len(readers) != 1 or readers[0].op_type != "Transpose":
        return False
    rank = len(vi.type.tensor_type.shape.dim)
    node = readers[0]
    if rank < 2 or not _swaps_leading(node, rank) or g.is_graph_io(node.output[0]):
        return False
    g.remove(node)
    g.rename(node.output[0], frames)
    _swap_dims(vi)
    return True
