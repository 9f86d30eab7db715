"""Contracts for ONNX models that edgeseq did not export: named state pairs, or discovery.

A stateful model from elsewhere (a VAD, a keyword spotter) has no ``edgeseq.contract``
metadata. Either name its state pairs, ``state={"h_in": "h_out"}``, or let
:func:`discover` pair them. Both first **probe** the model (:mod:`._probe`): a few calls
with zero state at batch 1 and 2 show where its batch and time axes are, the shapes of
outputs the graph leaves unsaid, and which outputs have exactly the shape and dtype of a
non-frames input: those are the state candidates. Discovery pairs each input with its
candidate, names only breaking ties between equal shapes; what was inferred and how sure
it is goes into :class:`Discovery`. ``edgeseq inspect MODEL --write-contract OUT.onnx``
stores the result, so the guess is made once, by a person, not at every load.

This module decides which contract a model runs with (:func:`resolve_contract`: given,
the file's own, named pairs completed, or discovered) and reads it from a file
(:func:`read_contract`); the pairing itself is :mod:`._discovery`'s, re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeseq.contract import METADATA_KEY, Contract, GraphIO
from edgeseq.errors import ContractError
from edgeseq.runtime._discovery import (
    Discovery,
    Prober,
    StateSpec,
    discover,
    frames_input,
    named_contract,
)
from edgeseq.runtime._pairing import check_unpaired, complete_from_contract
from edgeseq.runtime._probe import ProbeError, probe
from edgeseq.runtime._session import ModelSource, graph_io, open_session

__all__ = [
    "Discovery",
    "StateSpec",
    "discover",
    "named_contract",
    "read_contract",
    "resolve_contract",
]


def _probe_values(gin: Sequence[GraphIO], constants: Mapping[str, Any] | Sequence[str]):
    """Values to probe with: those given, zeros for constants named without one."""
    by = {g.name: g for g in gin}
    values, zeros = {}, []
    for name in constants:
        value = constants[name] if isinstance(constants, Mapping) else None
        if name not in by:
            raise ContractError(
                f"constants[{name!r}]: expected one of the graph's inputs {list(by)}, got "
                f"{name!r}. Check the input name."
            )
        g = by[name]
        if value is None:
            zeros.append(name)
            shape = [d if isinstance(d, int) else 1 for d in g.shape]
            values[name] = np.zeros(shape, np.dtype(g.dtype))
        else:
            values[name] = np.asarray(value, dtype=np.dtype(g.dtype))
    return values, zeros


def resolve_contract(
    metadata: Mapping[str, str],
    gin: Sequence[GraphIO],
    gout: Sequence[GraphIO],
    *,
    contract: Contract | None = None,
    state: StateSpec | None = None,
    constants: Sequence[str] | Mapping[str, Any] = (),
    source: str = "model",
    prober: Prober | None = None,
) -> tuple[Contract, Discovery | None]:
    """The contract to run with: given, the file's own, named pairs or discovered.

    ``prober(frames_name, constant_values)`` runs the model (see :func:`._probe.probe`);
    without it only declared shapes are read.
    """
    if contract is not None:
        return contract, None
    if METADATA_KEY in metadata and state is None:
        return Contract.from_metadata(metadata, source=source), None
    names = list(constants)
    pr, notes, own = None, [], None
    if METADATA_KEY in metadata:  # pairs named on a file with a contract: complete them
        own = Contract.from_metadata(metadata, source=source)
        if (state := complete_from_contract(state, own, names, notes)) is None:
            return own, None
    if prober is not None:
        values, zeros = _probe_values(gin, constants)
        frames_g = frames_input(gin, {*(state or {}), *names})
        try:
            pr = prober(frames_g.name, values)
            if zeros:
                notes.append(f"probed with zeros for {zeros} (no value given)")
        except ProbeError as exc:
            notes.append(f"probe failed ({exc}); shapes read from the graph's declarations")
    if state is not None:
        c = named_contract(gin, gout, state, names, probe=pr)
        check_unpaired(c, names, gin, gout, pr, own)  # no state fed as a constant
        layout = f"{pr.layout.describe()}; {pr.layout.how}" if pr else Discovery.layout
        return c, Discovery(c, {}, [], notes + (pr.notes if pr else []), layout, False, pr)
    try:
        found = discover(gin, gout, names, probe=pr)
    except ContractError as exc:
        raise ContractError(f"{source} has no {METADATA_KEY!r} metadata, and {exc}") from None
    return found.contract, dataclasses.replace(found, notes=notes + found.notes)


def session_prober(session: Any, gin: Sequence[GraphIO]) -> Prober:
    """A :data:`Prober` running ``session``."""
    return lambda frames, values: probe(session, gin, frames, values)


def read_contract(
    model: ModelSource,
    *,
    state: StateSpec | None = None,
    constants: Sequence[str] | Mapping[str, Any] = (),
    device: str = "cpu",
) -> tuple[Contract, Discovery | None]:
    """Load ``model`` and return the contract it would run with, and the discovery (if any).

    Unlike constructing a predictor, this needs no constant values (the probe feeds zeros
    for those not given): it is what ``edgeseq inspect`` shows.
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
        prober=session_prober(session, gin),
    )
    contract.check_graph(gin, gout)
    return contract, found
