"""Small ONNX editing helpers: add nodes and constants, rename tensors, replace graph I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from edgeseq.errors import ExportError

__all__ = ["Editor", "value_info"]

_NP = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
    "uint8": np.uint8,
    "int8": np.int8,
}


def _rename_in(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every node input named ``old`` reads ``new`` instead (subgraphs too: outer scope)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_in(attr.g, old, new)
            for sub in attr.graphs:
                _rename_in(sub, old, new)


def _reads(node: onnx.NodeProto) -> set[str]:
    """What a node reads, including outer-scope names its subgraphs read."""
    names = {x for x in node.input if x}
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in sub.node:
                names |= _reads(inner)
    return names


class Editor:
    """Edits one model's main graph in place; every tensor it adds has a unique name."""

    PREFIX = "edgeseq.triton."

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        self.graph = proto.graph
        self._n = 0

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{self.PREFIX}{hint}.{self._n}"

    # ------------------------------------------------------------------ nodes
    def node(self, op: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        """Append ``op(inputs)``; return its (single) output name."""
        out = out or self.fresh(op.lower())
        self.graph.node.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def const(self, value: Any, dtype: str, hint: str = "const") -> str:
        """An initializer holding ``value`` (numpy-convertible) as ``dtype``."""
        name = self.fresh(hint)
        arr = np.asarray(value, dtype=_NP[dtype])
        self.graph.initializer.append(onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        return self.const(list(values), "int64", hint)

    # ------------------------------------------------------------------ tensors
    def take_input(self, name: str) -> str:
        """Detach graph input ``name``: its readers now read a new internal tensor, returned;
        the caller produces that tensor from a replacement input (which may reuse ``name``)."""
        internal = self.fresh(f"{name}.graph")
        _rename_in(self.graph, name, internal)
        self.remove_input(name)
        return internal

    def take_output(self, name: str) -> str:
        """Detach graph output ``name``: the tensor keeps flowing under a new internal name,
        returned; the caller produces ``name`` again from it."""
        internal = self.fresh(f"{name}.graph")
        for node in self.graph.node:
            for i, out in enumerate(node.output):
                if out == name:
                    node.output[i] = internal
        _rename_in(self.graph, name, internal)
        for i, vi in enumerate(self.graph.output):
            if vi.name == name:
                del self.graph.output[i]
                break
        if not any(internal in n.output for n in self.graph.node):
            raise ExportError(
                f"graph output {name!r} is not computed by any node (an input or constant "
                "passed straight through); expected a computed output. Re-export the model."
            )
        return internal

    def remove_input(self, name: str) -> None:
        for i, vi in enumerate(self.graph.input):
            if vi.name == name:
                del self.graph.input[i]
                return

    def bake(self, name: str, value: np.ndarray) -> None:
        """Graph input ``name`` becomes a constant initializer holding ``value``."""
        self.remove_input(name)
        for i, init in enumerate(self.graph.initializer):
            if init.name == name:
                del self.graph.initializer[i]
                break
        self.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))

    def set_io(
        self, inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto]
    ) -> None:
        """Replace the graph's declared inputs (initializers aside) and outputs."""
        inits = {t.name for t in self.graph.initializer}
        keep = [vi for vi in self.graph.input if vi.name in inits]
        del self.graph.input[:]
        self.graph.input.extend([*inputs, *keep])
        del self.graph.output[:]
        self.graph.output.extend(outputs)
        del self.graph.value_info[:]  # shapes changed: let inference recompute them
        self.sort()

    def sort(self) -> None:
        """Order nodes so each comes after the producers of what it reads (ONNX requires it)."""
        nodes = list(self.graph.node)
        producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
        needs = [
            {producer[x] for x in _reads(n) if x in producer} - {i} for i, n in enumerate(nodes)
        ]
        order: list[int] = []
        placed = [False] * len(nodes)
        pending = list(range(len(nodes)))
        while pending:
            rest = []
            for i in pending:
                if all(placed[j] for j in needs[i]):
                    placed[i] = True
                    order.append(i)
                else:
                    rest.append(i)
            if len(rest) == len(pending):
                raise ExportError("the rewritten graph has a cycle; this is a bug in edgeseq")
            pending = rest
        del self.graph.node[:]
        self.graph.node.extend(nodes[i] for i in order)


def value_info(name: str, dtype: str, shape: Sequence[int | str]) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(_NP[dtype]))
    return helper.make_tensor_value_info(name, elem, list(shape))
