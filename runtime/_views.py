"""States as a user sees them: a state the graph carries in parts is stacked back.

A graph exported in the recurrent op's layout carries a 2-layer LSTM's ``h`` as two pairs
``(1, batch, hidden)`` (the contract's ``part_of``, see :class:`~edgeseq.contract.StatePair`).
Inside the runtime every pair is a buffer of its own; where a user reads or writes state
(``StreamingPredictor.state`` and ``set_state``) the parts are one array ``(2, 1, hidden)``
under the state's own name, as nn.LSTM has it. Snapshots keep the pairs as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeseq.contract import StatePair, StateView
from edgeseq.errors import InputError

__all__ = ["join_states", "split_states"]


def _one(shape: Sequence[int | str]) -> tuple[int, ...]:
    return tuple(1 if isinstance(d, str) else d for d in shape)


def join_states(views: Sequence[StateView], arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-pair arrays (contract order) -> ``{state name: array}``, parts stacked on axis 0."""
    out = {}
    for v in views:
        parts = [arrays[i] for i in v.pairs]
        out[v.name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return out


def split_states(
    views: Sequence[StateView], pairs: Sequence[StatePair], states: Any
) -> list[np.ndarray]:
    """``{state name: batch-1 array}`` (as :func:`join_states` gives it) -> checked arrays,
    one per pair in contract order; :class:`InputError` names the first thing wrong.

    The graph's own pairs by input name are taken too (e.g. a one-to-many init model's
    outputs, one per pair): each is then its own view."""
    names = [v.name for v in views]
    inputs = [p.input for p in pairs]
    if isinstance(states, Mapping) and set(states) == set(inputs) != set(names):
        views = [
            StateView(p.input, p.output, (i,), p.shape, p.batch_axis, p.dtype)
            for i, p in enumerate(pairs)
        ]
        names = inputs
    if not isinstance(states, Mapping) or set(states) != set(names):
        got = sorted(states) if isinstance(states, Mapping) else type(states).__name__
        raise InputError(
            f"set_state needs exactly the states {sorted(names)}; got {got}. Pass a dict "
            "like predictor.state."
        )
    out: list[np.ndarray | None] = [None] * len(pairs)
    for v in views:
        want = _one(v.shape)
        arr = np.asarray(states[v.name])
        if arr.shape != want or arr.dtype.kind != "f":
            raise InputError(
                f"state {v.name!r}: expected a float array of shape {want}, got "
                f"{arr.dtype} {arr.shape}. Pass batch-1 state as predictor.state has it."
            )
        with np.errstate(over="ignore", invalid="ignore"):  # checked as the model gets it
            value = np.array(arr, dtype=v.dtype)
        if not np.isfinite(value).all():
            raise InputError(
                f"state {v.name!r} contains NaN or Inf (or values beyond {v.dtype}'s "
                "range); expected finite values. Nothing was changed."
            )
        start = 0
        for i in v.pairs:
            size = _one(pairs[i].shape)[0] if len(v.pairs) > 1 else value.shape[0]
            out[i] = value[start : start + size].copy() if len(v.pairs) > 1 else value
            start += size
    return out  # type: ignore[return-value]
