"""Contracts for ONNX models that edgeseq did not export: named state pairs, or discovery.

A stateful model from elsewhere (a VAD, a keyword spotter) has no ``edgeseq.contract``
metadata. Either name its state pairs, ``state={"h_in": "h_out"}``, or let
:func:`discover` pair them by role and shape: an input that is not the frames input and
an output of exactly the same shape and dtype, with a symbolic batch axis. Names only
break ties. What was found is reported, and ``edgeseq inspect MODEL --write-contract
OUT.onnx`` stores it so the guess is made once, by a person, not at every load.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import edgeseq
from edgeseq.contract import (
    METADATA_KEY,
    Contract,
    GraphIO,
    ModelFacts,
    StatePair,
    TensorSpec,
)
from edgeseq.errors import ContractError
from edgeseq.runtime._session import ModelSource, graph_io, open_session

__all__ = [
    "Discovery",
    "StateSpec",
    "discover",
    "named_contract",
    "read_contract",
    "resolve_contract",
]

StateSpec = Mapping[str, "str | StatePair"]
_STATE_WORDS = {"h", "c", "hx", "cx", "state", "states", "hidden", "cell", "memory", "carry"}
_ROLE_WORDS = {"in", "out", "input", "output", "new", "next", "prev", "old", "updated", "n", "0"}


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found in a model without a contract, and why."""

    contract: Contract
    reasons: dict[str, str] = field(default_factory=dict)  # state input -> why it was paired
    needs_values: list[str] = field(default_factory=list)  # inputs to pass as constants=
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        c = self.contract
        f = c.frames
        lines = [f"  frames    {f.name!r} {_fmt(f.shape)} {f.dtype}"]
        for s in c.states:
            why = self.reasons.get(s.input, "named by the caller")
            lines.append(
                f"  state     {s.input!r} -> {s.output!r} {_fmt(s.shape)} batch axis "
                f"{s.batch_axis}, starts at zeros ({why})"
            )
        for name in c.constants:
            need = f" (needs constants={{{name!r}: value}})" if name in self.needs_values else ""
            lines.append(f"  constant  {name!r}{need}")
        for o in c.data_outputs():
            lines.append(f"  output    {o.name!r} {_fmt(o.shape)} {o.dtype}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _shape(g: GraphIO) -> list[int | str]:
    """Graph shape with unnamed unknown dims given a name (the contract needs one)."""
    return [d if d is not None else f"{g.name}_dim{i}" for i, d in enumerate(g.shape)]


def _batch_axis(shape: Sequence[int | str | None], batch: int | str | None) -> int | None:
    """The axis carrying the batch: the frames' batch symbol, else the only symbolic axis."""
    if isinstance(batch, str) and batch in shape:
        return list(shape).index(batch)
    symbolic = [i for i, d in enumerate(shape) if isinstance(d, str) or d is None]
    if len(symbolic) == 1:
        return symbolic[0]
    if not symbolic and isinstance(batch, int):
        fixed = [i for i, d in enumerate(shape) if d == batch]
        return fixed[0] if len(fixed) == 1 else None
    return None


def _frames_spec(g: GraphIO) -> tuple[TensorSpec, int | None]:
    """The frames input as a TensorSpec, and its fixed time length if it has one."""
    if len(g.shape) < 2:
        raise ContractError(
            f"the frames input {g.name!r} has shape {g.shape}; expected (batch, time) raw "
            "samples or (batch, time, features) frames. Name the inputs explicitly "
            "(StreamingPredictor(model, contract=...)) if the model is laid out otherwise."
        )
    fixed = g.shape[1] if isinstance(g.shape[1], int) else None
    return TensorSpec(g.name, _shape(g), g.dtype, 0, 1), fixed


def _outputs(
    gout: Sequence[GraphIO], frames: GraphIO, pairs: Sequence[StatePair]
) -> list[TensorSpec]:
    by_output = {p.output: p for p in pairs}
    batch, time = frames.shape[0], frames.shape[1]
    specs = []
    for g in gout:
        if g.name in by_output:
            specs.append(TensorSpec(g.name, _shape(g), g.dtype, by_output[g.name].batch_axis, None))
            continue
        b_ax = _batch_axis(g.shape, batch) if isinstance(batch, str) else None
        t_ax = g.shape.index(time) if isinstance(time, str) and time in g.shape else None
        if b_ax is None and g.shape and g.shape[0] == batch:
            b_ax = 0
        specs.append(TensorSpec(g.name, _shape(g), g.dtype, b_ax, t_ax if t_ax != b_ax else None))
    return specs


def _pair(gin_by: Mapping[str, GraphIO], name: str, value: str | StatePair, batch) -> StatePair:
    if isinstance(value, StatePair):
        return value
    if name not in gin_by:
        raise ContractError(
            f"state[{name!r}]: expected a graph input name, got {name!r}. The graph's inputs "
            f"are {sorted(gin_by)}."
        )
    g = gin_by[name]
    if any(d is None for d in g.shape):
        raise ContractError(
            f"state[{name!r}]: the graph gives shape {g.shape} with an unknown axis, so the "
            "initial state cannot be made. Pass a StatePair(input, output, shape, batch_axis) "
            "as the value instead of the output name."
        )
    axis = _batch_axis(g.shape, batch)
    extra = [d for i, d in enumerate(g.shape) if isinstance(d, str) and i != axis]
    if axis is None or extra:
        raise ContractError(
            f"state[{name!r}]: cannot tell the batch axis of shape {g.shape} (expected one "
            "symbolic axis, or the frames' batch symbol). Pass a StatePair(input, output, "
            "shape, batch_axis) as the value."
        )
    return StatePair(name, str(value), list(g.shape), axis, g.dtype, "zeros")


def named_contract(
    gin: Sequence[GraphIO],
    gout: Sequence[GraphIO],
    state: StateSpec,
    constants: Sequence[str] = (),
    facts: ModelFacts | None = None,
) -> Contract:
    """A contract from state pairs named by the caller: ``{"h_in": "h_out", ...}``."""
    if not isinstance(state, Mapping):
        raise ContractError(
            f"state must map state input names to output names, e.g. {{'h_in': 'h_out'}}; "
            f"got {type(state).__name__}."
        )
    gin_by = {g.name: g for g in gin}
    gout_names = {g.name for g in gout}
    rest = [g for g in gin if g.name not in state and g.name not in constants]
    if not rest:
        raise ContractError(
            f"every graph input is named as state or constant ({sorted(gin_by)}); expected "
            "one input left for the frames. Check the state= and constants= names."
        )
    frames, fixed = _frames_spec(rest[0])
    pairs = [_pair(gin_by, k, v, rest[0].shape[0]) for k, v in state.items()]
    for p in pairs:
        if p.output not in gout_names:
            raise ContractError(
                f"state[{p.input!r}]: expected a graph output name, got {p.output!r}. The "
                f"graph's outputs are {sorted(gout_names)}."
            )
    extra_inputs = [g.name for g in rest[1:]]
    base = facts or ModelFacts(cell="unknown", topology="custom", mode="external")
    if fixed is not None:
        base = dataclasses.replace(base, chunk=fixed)
    return Contract(
        inputs=[frames],
        outputs=_outputs(gout, rest[0], pairs),
        states=pairs,
        constants=[*constants, *extra_inputs],
        model=base,
        producer={"edgeseq": edgeseq.__version__, "exporter": "external"},
    )


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-zA-Z0-9]+|(?<=[a-zA-Z])(?=[0-9])", spaced.lower()) if w]


def _name_score(a: str, b: str) -> int:
    wa, wb = _words(a), _words(b)
    score = (
        2
        if [w for w in wa if w not in _ROLE_WORDS] == [w for w in wb if w not in _ROLE_WORDS]
        else 0
    )
    return score + int(bool(_STATE_WORDS & set(wa)) and bool(_STATE_WORDS & set(wb)))


def discover(
    gin: Sequence[GraphIO], gout: Sequence[GraphIO], constants: Sequence[str] = ()
) -> Discovery:
    """Pair state inputs with outputs by role and shape; see the module docstring.

    Raises :class:`ContractError` when no pair is evident.
    """
    rest = [g for g in gin if g.name not in constants]
    if not rest:
        raise ContractError(f"every input is a constant ({list(constants)}); no frames input.")
    batch = rest[0].shape[0] if rest[0].shape else None
    scored: list[tuple[int, int, int, str]] = []
    why_not: dict[str, str] = {}
    for i, g in enumerate(rest[1:]):
        axis = _batch_axis(g.shape, batch)
        why_not[g.name] = "no output of the same shape"
        if g.dtype not in ("float32", "float16", "float64"):
            why_not[g.name] = f"{g.dtype}, state is float"
            continue
        extra = [
            d for k, d in enumerate(g.shape) if (isinstance(d, str) or d is None) and k != axis
        ]
        if axis is None or extra:
            why_not[g.name] = "no single symbolic batch axis"
            continue
        for j, o in enumerate(gout):
            if o.dtype != g.dtype or len(o.shape) != len(g.shape):
                continue
            exact = list(o.shape) == list(g.shape)
            same_ints = all(
                (a == b) if isinstance(a, int) else not isinstance(b, int)
                for a, b in zip(g.shape, o.shape)
            )
            if exact or same_ints:
                score = (10 if exact else 5) + _name_score(g.name, o.name)
                scored.append((-score, i, j, g.name))
    used_in: set[str] = set()
    used_out: set[int] = set()
    pairs: list[StatePair] = []
    reasons: dict[str, str] = {}
    for _score, _, j, name in sorted(scored):
        if name in used_in or j in used_out:
            continue
        g, o = next(x for x in gin if x.name == name), gout[j]
        used_in.add(name)
        used_out.add(j)
        pairs.append(
            StatePair(name, o.name, list(g.shape), _batch_axis(g.shape, batch) or 0, g.dtype)
        )
        why = "same shape" if list(o.shape) == list(g.shape) else "same fixed sizes"
        names = " and alike names" if _name_score(name, o.name) >= 2 else ""
        reasons[name] = f"{why}{names}, symbolic batch axis"
    if not pairs:
        raise ContractError(
            "discovery expected a state pair (an input other than the frames input with an "
            "output of the same shape and a symbolic batch axis), got none in inputs "
            f"{[(g.name, g.shape) for g in gin]} and outputs "
            f"{[(g.name, g.shape) for g in gout]}. Name the pairs: StreamingPredictor(model, "
            "state={'h_in': 'h_out'}), or export the model with edgeseq."
        )
    pairs.sort(key=lambda p: [g.name for g in gin].index(p.input))
    contract = named_contract(gin, gout, {p.input: p for p in pairs}, constants)
    needs = [c for c in contract.constants if c not in constants]
    notes = [f"{n!r} is not state ({why_not.get(n, '?')}): fed as a constant" for n in needs]
    return Discovery(contract, reasons, needs, notes)


def resolve_contract(
    metadata: Mapping[str, str],
    gin: Sequence[GraphIO],
    gout: Sequence[GraphIO],
    *,
    contract: Contract | None = None,
    state: StateSpec | None = None,
    constants: Sequence[str] = (),
    source: str = "model",
) -> tuple[Contract, Discovery | None]:
    """The contract to run with: given, named pairs, the file's own, or discovered."""
    if contract is not None:
        return contract, None
    if state is not None:
        return named_contract(gin, gout, state, constants), None
    if METADATA_KEY in metadata:
        return Contract.from_metadata(metadata, source=source), None
    try:
        return (found := discover(gin, gout, constants)).contract, found
    except ContractError as exc:
        raise ContractError(f"{source} has no {METADATA_KEY!r} metadata, and {exc}") from None


def read_contract(
    model: ModelSource,
    *,
    state: StateSpec | None = None,
    constants: Sequence[str] = (),
    device: str = "cpu",
) -> tuple[Contract, Discovery | None]:
    """Load ``model`` and return the contract it would run with, and the discovery (if any).

    Unlike constructing a predictor, this needs no constant values: it is what
    ``edgeseq inspect`` shows.
    """
    session = open_session(model, device)
    gin, gout = graph_io(session)
    source = "model bytes" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    contract, found = resolve_contract(
        session.get_modelmeta().custom_metadata_map,
        gin,
        gout,
        state=state,
        constants=constants,
        source=source,
    )
    contract.check_graph(gin, gout)
    return contract, found
