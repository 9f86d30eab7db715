"""Named state pairs that leave state unpaired: complete them, or refuse.

A caller who names state pairs (``state={"h0": "hn"}``, CLI ``--state h0:hn``) may name
only some. Every graph input left over then becomes a constant, fed the same value on
every call: for an LSTM's ``c`` that resets its cell state at each call, and the outputs
are wrong without any error. So, before the named pairs become a contract:

- on a file that has an edgeseq contract, pairs that agree with it select that contract
  whole, and state inputs of the contract that the caller did not name are completed
  from it (:func:`complete_from_contract`);
- an input left over that has an output of its exact shape and dtype, not otherwise
  paired, that does not grow with the frame count (what the probe calls a state
  candidate), or that the file's contract says is state, is refused as a constant
  (:func:`check_unpaired`): naming it is the caller's job, not a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edgeseq.contract import Contract, GraphIO, StatePair
from edgeseq.errors import ContractError
from edgeseq.runtime._declared import compatible
from edgeseq.runtime._probe import Probe

__all__ = ["check_unpaired", "complete_from_contract"]


def _output(value: str | StatePair) -> str:
    return value.output if isinstance(value, StatePair) else value


def _spelled(pairs: Mapping[str, str]) -> str:
    """``state={'a':'b'} (CLI: --state a:b)``: one spelling for the library and the CLI."""
    py = ",".join(f"{i!r}:{o!r}" for i, o in pairs.items())
    cli = " ".join(f"--state {i}:{o}" for i, o in pairs.items())
    return f"state={{{py}}} (CLI: {cli})"


def complete_from_contract(
    state: Mapping[str, str | StatePair],
    own: Contract,
    constants: Sequence[str],
    notes: list[str],
) -> dict[str, str | StatePair] | None:
    """The pairs to run with on a file whose own contract is ``own`` (what was added is
    appended to ``notes``).

    ``None``: every named pair is one of ``own``'s, so ``own`` is the contract, whole. Else
    the caller overrides some pairs; ``own``'s other state pairs are added unless their
    output is taken by a named pair or their input is named as a constant (refused).
    """
    mine = {p.input: p for p in own.states}
    if all(
        name in mine
        and _output(value) == mine[name].output
        and (not isinstance(value, StatePair) or value == mine[name])
        for name, value in state.items()
    ):
        bad = [n for n in constants if n in mine]
        if bad:
            raise ContractError(
                f"constants[{bad[0]!r}]: this file's contract says {bad[0]!r} is state "
                f"({bad[0]!r} -> {mine[bad[0]].output!r}), carried from call to call; got it "
                "as a constant, which would reset that state on every call. Drop it from "
                "the constants."
            )
        return None
    taken = {_output(v) for v in state.values()}
    completed: dict[str, str | StatePair] = dict(state)
    added, clash = [], {}
    for p in own.states:
        if p.input in state:
            continue
        if p.output in taken or p.input in constants:
            clash[p.input] = p.output
        else:
            completed[p.input] = p
            added.append(f"{p.input!r} -> {p.output!r}")
    if clash:
        what = ", ".join(f"{i!r} -> {o!r}" for i, o in clash.items())
        also = f" and constants {list(constants)}" if constants else ""
        raise ContractError(
            f"this file's contract pairs {what} as state, which the given state pairs "
            f"{dict((k, _output(v)) for k, v in state.items())}{also} leave without its "
            "output; expected each state input of the model paired with an output of its "
            "own. Name a pair for each state input, or drop the state pairs to use the "
            "file's own contract."
        )
    if added:
        notes.append(f"completed from the file's contract: {', '.join(added)}")
    return completed


def _candidates(
    name: str, gin: Mapping[str, GraphIO], gout: Sequence[GraphIO], probe: Probe | None
) -> list[str]:
    """Outputs that could carry input ``name``'s state: the probe's matches, else the
    outputs of a compatible declared shape and the same dtype."""
    if probe is not None and name in probe.inputs:
        return list(probe.matches.get(name, []))
    g = gin[name]
    if not any(not isinstance(d, int) for d in g.shape):
        return []  # a fully fixed input (a sample rate, a flag): not batched state
    return [o.name for o in gout if o.dtype == g.dtype and compatible(g.shape, o.shape)]


def check_unpaired(
    contract: Contract,
    named: Sequence[str],
    gin: Sequence[GraphIO],
    gout: Sequence[GraphIO],
    probe: Probe | None,
    own: Contract | None = None,
) -> None:
    """Refuse inputs that ``contract`` feeds as constants but that look like state.

    ``named`` are the constants the caller named; the others in ``contract.constants``
    are the inputs no one named. ``own`` is the file's own contract, if it has one.
    """
    by = {g.name: g for g in gin}
    used = {p.output for p in contract.states}
    own_states = {p.input: p.output for p in (own.states if own is not None else [])}
    unpaired: dict[str, str] = {}
    for name in contract.constants:
        if name in named:
            continue
        if name in own_states:
            unpaired[name] = own_states[name]
            continue
        free = [o for o in _candidates(name, by, gout, probe) if o not in used]
        if free:
            unpaired[name] = free[0]
    if not unpaired:
        return
    shown = ", ".join(
        f"{n!r} ({by[n].dtype} {[d if d is not None else '?' for d in by[n].shape]}; output "
        f"{o!r} has its shape)"
        for n, o in unpaired.items()
    )
    given = {p.input: p.output for p in contract.states}
    raise ContractError(
        f"the state pairs given {given} leave state input(s) unpaired: {shown}. Expected "
        "every state input paired; got them as constants, which would feed the same value "
        f"on every call and reset that state. Name them too: {_spelled({**given, **unpaired})}"
        ", or name none to use the file's contract or discovery."
    )
