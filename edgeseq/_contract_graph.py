"""Checking a contract against the graph it describes, as onnxruntime reports the graph's
inputs and outputs: every declared tensor exists with the declared dtype and a compatible
shape, and every graph input is declared. Each failure is a
:class:`~edgeseq.errors.ContractError` naming the contract field that is wrong.

Used by :meth:`edgeseq.contract.Contract.check_graph` (the front door), before the first call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from edgeseq._contract_json import fail
from edgeseq._contract_rules import check_rules

if TYPE_CHECKING:
    from edgeseq.contract import Contract, Dim, GraphIO

__all__ = ["check_graph"]


def check_graph(
    contract: Contract, graph_inputs: Iterable[GraphIO], graph_outputs: Iterable[GraphIO]
) -> None:
    """Refuse ``contract`` when it disagrees with the graph, naming the field that is wrong."""
    check_rules(contract)  # a contract given as an object was never parsed
    gin = {g.name: g for g in graph_inputs}
    gout = {g.name: g for g in graph_outputs}

    def check(
        spec_path: str,
        name: str,
        table: dict[str, GraphIO],
        kind: str,
        shape: Sequence[Dim] | None,
        dtype: str | None,
    ) -> None:
        if name not in table:
            raise fail(spec_path, f"a graph {kind} (the graph has {sorted(table)})", name)
        g = table[name]
        if dtype is not None and g.dtype != dtype:
            raise fail(f"{spec_path} dtype", f"{g.dtype} as in the graph", dtype)
        if shape is None:
            return
        if len(g.shape) != len(shape):
            raise fail(
                f"{spec_path} shape",
                f"rank {len(g.shape)} as in the graph {g.shape}",
                list(shape),
            )
        for want, have in zip(shape, g.shape):
            if isinstance(want, int) and isinstance(have, int) and want != have:
                raise fail(f"{spec_path} shape", f"{g.shape} as in the graph", list(shape))

    declared_in: set[str] = set()
    for i, t in enumerate(contract.inputs):
        check(f"inputs[{i}].name", t.name, gin, "input", t.shape, t.dtype)
        declared_in.add(t.name)
    for i, t in enumerate(contract.outputs):
        check(f"outputs[{i}].name", t.name, gout, "output", t.shape, t.dtype)
    for i, s in enumerate(contract.states):
        check(f"states[{i}].input", s.input, gin, "input", s.shape, s.dtype)
        check(f"states[{i}].output", s.output, gout, "output", s.shape, s.dtype)
        declared_in.add(s.input)
    if contract.lengths is not None:
        check("lengths", contract.lengths, gin, "input", None, None)
        declared_in.add(contract.lengths)
    for c in contract.constants:
        check("constants", c, gin, "input", None, None)
        declared_in.add(c)
    missing = sorted(set(gin) - declared_in)
    if missing:
        raise fail(
            "inputs",
            f"every graph input declared (undeclared: {missing})",
            [t.name for t in contract.inputs],
        )
    contract.state_views()  # parts of a state that cannot stack (each pair checked above)
