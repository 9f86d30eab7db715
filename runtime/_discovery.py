"""Finding a model's state pairs without a contract: named by the caller, or discovered.

:func:`named_contract` builds the contract of pairs the caller named; :func:`discover`
pairs each non-frames input with the one output of its shape and dtype, names only
breaking ties (see :mod:`edgeseq.runtime.discover`, which decides when either runs and
re-exports both). :class:`Discovery` records what was inferred and how sure it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import edgeseq
from edgeseq.contract import Contract, GraphIO, ModelFacts, StatePair, TensorSpec
from edgeseq.errors import ContractError
from edgeseq.runtime._declared import (
    declared_candidates,
    declared_frames,
    declared_outputs,
    declared_pair,
    name_score,
)
from edgeseq.runtime._probe import Probe

__all__ = ["Discovery", "Prober", "StateSpec", "discover", "frames_input", "named_contract"]

StateSpec = Mapping[str, "str | StatePair"]
Prober = Callable[[str, Mapping[str, np.ndarray]], Probe]


@dataclass(frozen=True)
class Discovery:
    """What edgeseq inferred about a model without a contract, and how sure it is.

    ``discovered`` is False when the caller named every pair and the probe only filled
    in shapes and axes the graph does not declare.
    """

    contract: Contract
    reasons: dict[str, str] = field(default_factory=dict)  # state input -> why it was paired
    needs_values: list[str] = field(default_factory=list)  # inputs to pass as constants=
    notes: list[str] = field(default_factory=list)
    layout: str = "read as (batch, time, ...) from the declared shape"
    discovered: bool = True
    probe: Probe | None = field(default=None, repr=False, compare=False)

    def report(self) -> str:
        c = self.contract
        f = c.frames
        lines = [f"  frames    {f.name!r} {_fmt(f.shape)} {f.dtype}: {self.layout}"]
        for s in c.states:
            why = self.reasons.get(s.input, "named by the caller")
            axis = "no batch axis" if s.batch_axis is None else f"batch axis {s.batch_axis}"
            lines.append(
                f"  state     {s.input!r} -> {s.output!r} {_fmt(s.shape)} {s.dtype}, {axis}, "
                f"starts at zeros ({why})"
            )
        for name in c.constants:
            need = f" (needs constants={{{name!r}: value}})" if name in self.needs_values else ""
            lines.append(f"  constant  {name!r}{need}")
        for o in c.data_outputs():
            lines.append(f"  output    {o.name!r} {_fmt(o.shape)} {o.dtype}")
        if c.model.chunk:
            lines.append(f"  chunk     {c.model.chunk} frames per call")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def frames_input(gin: Sequence[GraphIO], skip: set[str]) -> GraphIO:
    rest = [g for g in gin if g.name not in skip]
    if not rest:
        raise ContractError(
            f"every graph input is named as state or constant ({[g.name for g in gin]}); "
            "expected one input left for the frames. Check the state= and constants= names."
        )
    return rest[0]


# ---------------------------------------------------------------------- pairs
def _probed_pair(name: str, value: str | StatePair, pr: Probe, gout_by) -> StatePair:
    want, dtype, axis = pr.inputs[name]
    if isinstance(value, StatePair):
        concrete = [1 if isinstance(d, str) else d for d in value.shape]
        probed = [1 if isinstance(d, str) else d for d in want]
        if concrete != probed or value.dtype != dtype:
            raise ContractError(
                f"state[{name!r}]: the StatePair says {value.dtype} {value.shape}; the probe "
                f"ran the model with {name!r} as {dtype} {want} (batch 1: {probed}). Expected "
                "them to agree: fix the StatePair's shape, or pass the output name only."
            )
        return value
    if value not in pr.matches.get(name, []):
        shape, odtype = pr.outputs[value][:2]
        ok = pr.matches.get(name) or "none"
        raise ContractError(
            f"state[{name!r}]: expected an output of the input's shape {want} and dtype "
            f"{dtype}, got {value!r}, which the probe shows as {odtype} {shape}. Outputs that "
            f"match: {ok}."
        )
    return StatePair(name, value, list(want), axis, dtype, "zeros")


def _check_names(state: StateSpec, gin_by, gout_names: set[str]) -> None:
    if not isinstance(state, Mapping):
        raise ContractError(
            f"state must map state input names to output names, e.g. {{'h_in': 'h_out'}}; "
            f"got {type(state).__name__}."
        )
    for name, value in state.items():
        if name not in gin_by:
            raise ContractError(
                f"state[{name!r}]: expected a graph input name, got {name!r}. The graph's "
                f"inputs are {sorted(gin_by)}."
            )
        out = value.output if isinstance(value, StatePair) else value
        if out not in gout_names:
            raise ContractError(
                f"state[{name!r}]: expected a graph output name, got {out!r}. The graph's "
                f"outputs are {sorted(gout_names)}."
            )


def _build(
    gin: Sequence[GraphIO],
    gout: Sequence[GraphIO],
    frames_g: GraphIO,
    pairs: Sequence[StatePair],
    constants: Sequence[str],
    pr: Probe | None,
    facts: ModelFacts | None,
) -> Contract:
    base = facts or ModelFacts(cell="unknown", topology="custom", mode="external")
    if pr is None:
        frames, fixed = declared_frames(frames_g)
        outputs = declared_outputs(gout, frames_g, pairs)
    else:
        lay = pr.layout
        frames = TensorSpec(
            frames_g.name, pr.frames_shape, frames_g.dtype, lay.batch_axis, lay.time_axis
        )
        fixed = pr.fixed_size if lay.time_axis is not None else None
        by_out = {p.output: p for p in pairs}
        outputs = []
        for g in gout:
            p = by_out.get(g.name)
            if p is not None:
                outputs.append(TensorSpec(g.name, list(p.shape), p.dtype, p.batch_axis, None))
            else:
                shape, dtype, b_ax, t_ax = pr.outputs[g.name]
                outputs.append(TensorSpec(g.name, shape, dtype, b_ax, t_ax))
    if fixed is not None and base.chunk is None:
        base = dataclasses.replace(base, chunk=fixed)
    named = {frames_g.name, *(p.input for p in pairs), *constants}
    extra_inputs = [g.name for g in gin if g.name not in named]
    return Contract(
        inputs=[frames],
        outputs=outputs,
        states=list(pairs),
        constants=[*constants, *extra_inputs],
        model=base,
        producer={"edgeseq": edgeseq.__version__, "exporter": "external"},
    )


def named_contract(
    gin: Sequence[GraphIO],
    gout: Sequence[GraphIO],
    state: StateSpec,
    constants: Sequence[str] = (),
    facts: ModelFacts | None = None,
    probe: Probe | None = None,
) -> Contract:
    """A contract from state pairs named by the caller: ``{"h_in": "h_out", ...}``.

    With a ``probe`` the shapes, axes and layout come from running the model, and each
    named output must have its input's shape and dtype; without one, from the declared
    shapes.
    """
    gin_by = {g.name: g for g in gin}
    gout_by = {g.name: g for g in gout}
    _check_names(state, gin_by, set(gout_by))
    frames_g = frames_input(gin, {*state, *constants})
    pairs = []
    for name, value in state.items():
        if probe is not None and name in probe.inputs:
            pairs.append(_probed_pair(name, value, probe, gout_by))
        elif isinstance(value, StatePair):
            pairs.append(value)
        else:
            pairs.append(declared_pair(gin_by, name, value, frames_g.shape[0]))
    return _build(gin, gout, frames_g, pairs, list(constants), probe, facts)


def _probed_candidates(rest: Sequence[GraphIO], gout, pr: Probe) -> tuple[list, dict[str, str]]:
    scored, why_not = [], {}
    index = {o.name: j for j, o in enumerate(gout)}
    for i, g in enumerate(rest):
        found = pr.matches.get(g.name, [])
        shape, dtype, _ = pr.inputs[g.name]
        why_not[g.name] = f"no output is {dtype} {_fmt(shape)}"
        for o in found:
            scored.append((-(10 + name_score(g.name, o)), i, index[o], g.name))
    return scored, why_not


def discover(
    gin: Sequence[GraphIO],
    gout: Sequence[GraphIO],
    constants: Sequence[str] = (),
    probe: Probe | None = None,
) -> Discovery:
    """Pair state inputs with outputs by shape and dtype; see the module docstring.

    Raises :class:`ContractError` when no pair is evident.
    """
    frames_g = frames_input(gin, set(constants))
    rest = [g for g in gin if g.name not in constants and g.name != frames_g.name]
    if probe is not None:
        scored, why_not = _probed_candidates(rest, gout, probe)
    else:
        batch = frames_g.shape[0] if frames_g.shape else None
        scored, why_not = declared_candidates(rest, gout, batch)
    by_input: dict[str, list[int]] = {}
    for _, _, j, name in scored:
        by_input.setdefault(name, []).append(j)
    used_in: set[str] = set()
    used_out: set[int] = set()
    chosen: dict[str, str] = {}
    reasons: dict[str, str] = {}
    notes: list[str] = []
    for _score, _, j, name in sorted(scored):
        if name in used_in or j in used_out:
            continue
        used_in.add(name)
        used_out.add(j)
        chosen[name] = gout[j].name
        others = [gout[k].name for k in by_input[name] if k != j]
        how = "declared shapes"
        if probe is not None:
            at = "batch 1" if probe.batch_fixed or probe.layout.batch_axis is None else "batch 1, 2"
            how = f"probed: same shape and dtype at {at}"
        if not others:
            reasons[name] = f"{how}, the only such output"
        elif name_score(name, gout[j].name) > max(
            name_score(name, gout[k].name) for k in by_input[name] if k != j
        ):
            reasons[name] = f"{how}; also matches {others}, chosen by name"
        else:
            reasons[name] = f"{how}; also matches {others}, paired by position"
            notes.append(
                f"{name!r} -> {gout[j].name!r} was paired by position among outputs of equal "
                "shape: check it, or name the pairs (state={...})"
            )
    if not chosen:
        raise ContractError(
            "discovery expected a state pair (an input other than the frames input with an "
            "output of the same shape and dtype), got none in inputs "
            f"{[(g.name, g.shape) for g in gin]} and outputs "
            f"{[(g.name, g.shape) for g in gout]}. Name the pairs: StreamingPredictor(model, "
            "state={'h_in': 'h_out'}), or export the model with edgeseq."
        )
    order = [g.name for g in gin]
    state = {n: chosen[n] for n in sorted(chosen, key=order.index)}
    contract = named_contract(gin, gout, state, constants, probe=probe)
    needs = [c for c in contract.constants if c not in constants]
    notes = [
        f"{n!r} is not state ({why_not.get(n, '?')}): fed as a constant" for n in needs
    ] + notes
    layout = "read as (batch, time, ...) from the declared shape"
    if probe is not None:
        layout = f"{probe.layout.describe()}; {probe.layout.how}"
        notes += probe.notes
    return Discovery(contract, reasons, needs, notes, layout, True, probe)
