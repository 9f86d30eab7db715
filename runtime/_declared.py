"""Contract pieces from what a graph declares, for when the model cannot be probed.

The probe (:mod:`._probe`) learns shapes by running the model; without it (a constant's
value is unknown, or no layout ran) these helpers read the declared shapes: the frames
input is ``(batch, time, ...)``, a state's batch axis is its one symbolic (or unnamed) axis
or the frames' batch symbol, and an output's dims may be auto-named differently from the
input it matches (``["Add_dim_0", "batch", "Add_dim_2"]`` for ``[2, "batch", 128]``).
It also checks ``constants=`` values against the declared input types and shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeseq.contract import GraphIO, StatePair, TensorSpec
from edgeseq.errors import ContractError, InputError

__all__ = [
    "batch_axis",
    "compatible",
    "constant_values",
    "declared_candidates",
    "declared_frames",
    "declared_outputs",
    "declared_pair",
    "declared_shape",
    "name_score",
]

_STATE_WORDS = {"h", "c", "hx", "cx", "state", "states", "hidden", "cell", "memory", "carry"}
_ROLE_WORDS = {"in", "out", "input", "output", "new", "next", "prev", "old", "updated", "n", "0"}


def declared_shape(g: GraphIO) -> list[int | str]:
    """Graph shape with unnamed unknown dims given a name (the contract needs one)."""
    return [d if d is not None else f"{g.name}_dim{i}" for i, d in enumerate(g.shape)]


def batch_axis(shape: Sequence[int | str | None], batch: int | str | None) -> int | None:
    """The axis carrying the batch: the frames' batch symbol, else the only unknown axis."""
    if isinstance(batch, str) and batch in shape:
        return list(shape).index(batch)
    symbolic = [i for i, d in enumerate(shape) if isinstance(d, str) or d is None]
    if len(symbolic) == 1:
        return symbolic[0]
    if not symbolic and isinstance(batch, int):
        fixed = [i for i, d in enumerate(shape) if d == batch]
        return fixed[0] if len(fixed) == 1 else None
    return None


def compatible(a: Sequence[int | str | None], b: Sequence[int | str | None]) -> bool:
    """Same rank, and every axis fixed to the same size or left unknown on either side."""
    return len(a) == len(b) and all(
        x == y or not isinstance(x, int) or not isinstance(y, int) for x, y in zip(a, b)
    )


def declared_frames(g: GraphIO) -> tuple[TensorSpec, int | None]:
    """The frames input read as ``(batch, time, ...)``, and its fixed time length if any."""
    if len(g.shape) < 2:
        raise ContractError(
            f"the frames input {g.name!r} has shape {g.shape}; without running the model "
            "edgeseq reads it as (batch, time, ...). Pass the constants' values "
            "(constants={name: value}) so the model can be probed, or a full contract."
        )
    fixed = g.shape[1] if isinstance(g.shape[1], int) else None
    return TensorSpec(g.name, declared_shape(g), g.dtype, 0, 1), fixed


def declared_outputs(
    gout: Sequence[GraphIO], frames: GraphIO, pairs: Sequence[StatePair]
) -> list[TensorSpec]:
    """Output specs from declared shapes: batch on the frames' batch symbol or axis 0."""
    by_output = {p.output: p for p in pairs}
    batch, time = frames.shape[0], frames.shape[1]
    specs = []
    for g in gout:
        if g.name in by_output:
            p = by_output[g.name]
            specs.append(TensorSpec(g.name, list(p.shape), g.dtype, p.batch_axis, None))
            continue
        b_ax = batch_axis(g.shape, batch) if isinstance(batch, str) else None
        t_ax = g.shape.index(time) if isinstance(time, str) and time in g.shape else None
        if b_ax is None and g.shape and g.shape[0] == batch:
            b_ax = 0
        shape = declared_shape(g)
        specs.append(TensorSpec(g.name, shape, g.dtype, b_ax, t_ax if t_ax != b_ax else None))
    return specs


def declared_pair(gin_by: Mapping[str, GraphIO], name: str, value: str, batch) -> StatePair:
    """A named pair whose shape comes from the declared graph: one unknown axis is the batch."""
    g = gin_by[name]
    unknown = [i for i, d in enumerate(g.shape) if not isinstance(d, int)]
    axis = batch_axis(g.shape, batch)
    if axis is None or len(unknown) > 1:
        raise ContractError(
            f"state[{name!r}]: cannot tell the batch axis of shape {g.shape} (expected one "
            "symbolic or unknown axis) and the model could not be probed. Pass the "
            "constants' values so it can be, or a StatePair(input, output, shape, batch_axis)."
        )
    shape = ["batch" if i == axis else d for i, d in enumerate(g.shape)]
    return StatePair(name, str(value), shape, axis, g.dtype, "zeros")


def declared_candidates(rest: Sequence[GraphIO], gout, batch) -> tuple[list, dict[str, str]]:
    """Scored ``(-score, input index, output index, input name)`` pairs of compatible
    declared shapes, and why each input without one is not state."""
    scored, why_not = [], {}
    for i, g in enumerate(rest):
        axis = batch_axis(g.shape, batch)
        unknown = [k for k, d in enumerate(g.shape) if not isinstance(d, int)]
        if axis is None or len(unknown) > 1:
            why_not[g.name] = "no single symbolic batch axis"
            continue
        why_not[g.name] = "no output of the same shape and dtype"
        for j, o in enumerate(gout):
            if o.dtype == g.dtype and compatible(g.shape, o.shape):
                exact = list(o.shape) == list(g.shape)
                scored.append((-(10 * exact + 5 + name_score(g.name, o.name)), i, j, g.name))
    return scored, why_not


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-zA-Z0-9]+|(?<=[a-zA-Z])(?=[0-9])", spaced.lower()) if w]


def _stem(name: str) -> str:
    """``name`` without separators and without a trailing role word (``h_out`` -> ``h``)."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    for role in sorted(_ROLE_WORDS, key=len, reverse=True):
        if flat.endswith(role) and len(flat) > len(role):
            return flat[: -len(role)]
    return flat


def name_score(a: str, b: str) -> int:
    """How alike a state input's and an output's names are: 2 for the same stem (``h`` and
    ``hn``, ``state`` and ``stateN``), +1 if both use a state word. Only breaks ties
    between pairs of equal shape."""
    wa, wb = _words(a), _words(b)
    stem = [w for w in wa if w not in _ROLE_WORDS] == [w for w in wb if w not in _ROLE_WORDS]
    stem = stem or _stem(a) == _stem(b)
    return 2 * stem + int(bool(_STATE_WORDS & set(wa)) and bool(_STATE_WORDS & set(wb)))


def constant_values(given: Mapping[str, Any], gin: Sequence[GraphIO]) -> dict[str, np.ndarray]:
    """``constants=`` as arrays of the graph's dtype and shape; refuse a wrong one."""
    graph = {g.name: g for g in gin}
    out = {}
    for name, value in given.items():
        g = graph[name]
        try:
            got = np.asarray(value)
        except Exception:
            got = np.asarray(None)
        want = np.dtype(g.dtype)
        if got.dtype.kind not in "biuf" or (want.kind in "biu" and got.dtype.kind == "f"):
            shown = got.tolist() if got.size < 5 else got.shape
            raise InputError(
                f"constants[{name!r}]: expected {want.name} (the graph's type), got "
                f"{got.dtype.name} {shown}. Pass e.g. np.array(value, dtype=np.{want.name})."
            )
        arr = _cast_exactly(name, got, want)
        ok = arr.ndim == len(g.shape) and all(
            not isinstance(d, int) or d == s for d, s in zip(g.shape, arr.shape)
        )
        if not ok:
            raise InputError(
                f"constants[{name!r}]: expected shape {g.shape}, got {list(arr.shape)}. "
                f"Pass e.g. np.array(value, dtype=np.{g.dtype}).reshape({g.shape})."
            )
        out[name] = arr
    return out


def _cast_exactly(name: str, got: np.ndarray, want: np.dtype) -> np.ndarray:
    """``got`` as ``want`` (C order, 0-d stays 0-d), refusing a cast that changes a value:
    an int that wraps or a bool from anything but 0/1, a finite float that overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.array(got, dtype=want, order="C")
    if want.kind in "biu":
        lo, hi = (0, 1) if want.kind == "b" else (np.iinfo(want).min, np.iinfo(want).max)
        bad = (got < lo) | (got > hi) if got.size else np.zeros(0, bool)
    else:
        bad = np.isfinite(got) & ~np.isfinite(arr) if got.size else np.zeros(0, bool)
    if np.any(bad):
        at = np.unravel_index(int(np.argmax(bad)), got.shape) if got.ndim else ()
        span = (
            "0 or 1"
            if want.kind == "b"
            else (f"from {lo} to {hi}" if want.kind in "iu" else f"finite in {want.name}")
        )
        raise InputError(
            f"constants[{name!r}]: expected values {span} (the graph's {want.name}), got "
            f"{got[at].item()!r}, which the cast to {want.name} would change to "
            f"{arr[at].item()!r}. Pass a value the model's input holds."
        )
    return arr


# constant input names that tell a model the sample rate of its audio (Silero's ``sr``)
RATE_NAMES = {"sr", "rate", "fs", "sample_rate", "samplerate", "sampling_rate", "sample_rate_hz"}


def rate_constant(constants: Mapping[str, Any]) -> tuple[str, float] | None:
    """The sample-rate constant among ``constants`` (by name, one value), if any."""
    for name, value in constants.items():
        v = np.asarray(value)
        if name.lower() in RATE_NAMES and v.size == 1 and v.dtype.kind in "iuf":
            return name, float(v.reshape(-1)[0])
    return None


def check_rate_constant(recorded: Any, constants: Mapping[str, Any]) -> None:
    """Refuse a sample-rate constant that contradicts the rate the contract records."""
    found = rate_constant(constants)
    if recorded is None or found is None or found[1] == recorded:
        return
    name, value = found
    raise InputError(
        f"constants[{name!r}] tells the model its samples are at {value:g} Hz; this model's "
        f"contract records {recorded} Hz (its windows and context are in samples at that "
        f"rate). Expected {name}={recorded}; for another rate, store a contract made for it: "
        "edgeseq inspect MODEL --rate N --window N --context N --write-contract OUT.onnx"
    )
