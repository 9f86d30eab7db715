"""Rules a parsed contract must satisfy beyond its JSON shape: field types of the model
facts, batch axes that really are batch axes (and distinct from time), initial values that
fill their state, and preprocessing the runtime can apply without producing Inf or NaN.

Used by :mod:`edgeseq.contract` (at parse time and before the first call); every failure
is a :class:`~edgeseq.errors.ContractError` naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgeseq.errors import ContractError

if TYPE_CHECKING:
    from edgeseq.contract import Contract, ModelFacts, StatePair, StateView, TensorSpec

__all__ = ["check_facts", "check_producer", "check_rules", "state_views"]

_F32_MAX = 3.4028234663852886e38
_F32_TINY = 2.0**-126  # the smallest normal float32: 1 / a subnormal overflows


def _fail(path: str, expected: str, got: Any) -> ContractError:
    from edgeseq._contract_json import fail

    return fail(path, expected, got)


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


# ModelFacts field -> (what it must be, check)
_FACTS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "cell": ("a string", lambda v: isinstance(v, str)),
    "layers": ("a positive int or null", _opt(lambda v: _is_int(v, 1))),
    "hidden_size": ("a positive int or null", _opt(lambda v: _is_int(v, 1))),
    "input_size": ("a positive int or null", _opt(lambda v: _is_int(v, 1))),
    "output_size": ("a positive int or null", _opt(lambda v: _is_int(v, 1))),
    "topology": ("a string", lambda v: isinstance(v, str)),
    "mode": ("a string", lambda v: isinstance(v, str)),
    "chunk": ("a positive int of frames or null", _opt(lambda v: _is_int(v, 1))),
    "stateful": ("true or false", lambda v: isinstance(v, bool)),
    "task": ("a string or null", _opt(lambda v: isinstance(v, str))),
    "labels": ("a list of strings or null", _opt(_str_list)),
    "extra": ("an object", lambda v: isinstance(v, Mapping)),
}


def check_facts(facts: ModelFacts) -> None:
    for name, (expected, ok) in _FACTS.items():
        if not ok(getattr(facts, name)):
            raise _fail(f"model.{name}", expected, getattr(facts, name))


def check_producer(producer: Any) -> None:
    if not isinstance(producer, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in producer.items()
    ):
        raise _fail("producer", "an object of strings", producer)


def check_rules(c: Contract) -> None:
    """Everything that needs more than one field: axes, init sizes, preprocessing."""
    check_facts(c.model)
    check_producer(c.producer)
    for i, t in enumerate(c.inputs):
        _tensor_axes(f"inputs[{i}]", t)
    for i, t in enumerate(c.outputs):
        _tensor_axes(f"outputs[{i}]", t)
    frames = c.inputs[0]
    for i, s in enumerate(c.states):
        _state(f"states[{i}]", s)
    prep = c.preprocessing
    features = _last_dim(frames)
    data = c.data_outputs()
    out = _last_dim(data[0]) if data else None
    for name, size in (("mean", features), ("std", features), ("out_mean", out), ("out_std", out)):
        _scale_values(f"preprocessing.{name}", getattr(prep, name), size, name.endswith("std"))


def _tensor_axes(path: str, t: TensorSpec) -> None:
    b, tm = t.batch_axis, t.time_axis
    if b is not None and b == tm:
        raise _fail(f"{path}.time_axis", "an axis other than the batch axis", tm)
    if b is not None and not (isinstance(t.shape[b], str) or t.shape[b] == 1):
        raise _fail(f"{path}.batch_axis", f"an axis whose size is symbolic (or 1) in {t.shape}", b)


def _state(path: str, s: StatePair) -> None:
    dim = s.shape[s.batch_axis] if s.batch_axis is not None else 1  # None: one stream per call
    if not (isinstance(dim, str) or dim == 1):
        raise _fail(
            f"{path}.batch_axis",
            f"an axis whose size is symbolic (or 1) in {s.shape}",
            s.batch_axis,
        )
    if s.init == "zeros":
        return
    values: Sequence[Any] = s.init  # type: ignore[assignment]
    if any(isinstance(v, bool) or not _finite32(v) for v in values):
        raise _fail(f"{path}.init", "finite numbers within float32 range", values[:8])
    rest = [d for ax, d in enumerate(s.shape) if ax != s.batch_axis]
    if all(isinstance(d, int) for d in rest) and len(values) != math.prod(rest):
        raise _fail(
            f"{path}.init",
            f"{math.prod(rest)} values (shape {s.shape} with batch 1)",
            f"{len(values)} values",
        )


def _last_dim(t: TensorSpec) -> int | None:
    """Values per frame on the last axis (1 when the last axis is batch or time)."""
    last = len(t.shape) - 1
    if last in (t.batch_axis, t.time_axis):
        return 1
    d = t.shape[last]
    return d if isinstance(d, int) else None


def _scale_values(path: str, vals: list[float] | None, size: int | None, scale: bool) -> None:
    if vals is None:
        return
    if not vals or not all(_finite32(v) for v in vals):
        raise _fail(path, "a non-empty list of finite numbers within float32 range", vals[:8])
    if scale and not all(abs(v) >= _F32_TINY for v in vals):
        raise _fail(
            path, "scales that are non-zero normal float32 numbers (|s| >= 1.2e-38)", vals[:8]
        )
    if size is not None and len(vals) not in (1, size):
        raise _fail(path, f"1 or {size} values (one per feature)", f"{len(vals)} values")


def _finite32(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and abs(v) <= _F32_MAX


def state_views(states: Sequence[StatePair]) -> list[StateView]:
    """The states as a user sees them, in contract order: one per pair, except that the
    parts of a state (pairs with the same ``part_of``) make one view, stacked on axis 0
    (:meth:`Contract.state_views`); parts that cannot stack are refused, naming the field."""
    from edgeseq.contract import StateView

    groups: dict[str, list[int]] = {}
    for i, p in enumerate(states):
        groups.setdefault(p.part_of or p.input, []).append(i)
    out = []
    inputs = {p.input for p in states}
    for name, idx in groups.items():
        parts = [states[i] for i in idx]
        first = parts[0]
        if first.part_of is None:
            out.append(
                StateView(name, first.output, (idx[0],), first.shape, first.batch_axis, first.dtype)
            )
            continue
        where = f"states[{idx[0]}].part_of"
        if name in inputs:
            raise _fail(where, "a name no state pair has as its input", name)
        for k, p in zip(idx, parts):  # axis 0 stacks the parts: the batch is elsewhere
            if p.batch_axis is not None and not isinstance(p.shape[p.batch_axis], str):
                raise _fail(
                    f"states[{k}].batch_axis",
                    f"the symbolic batch axis of a part of {name!r} {p.shape} (axis 0 stacks "
                    "the parts)",
                    p.batch_axis,
                )
        rest = {repr((p.shape[1:], p.batch_axis, p.dtype)) for p in parts}
        if len(rest) != 1 or not all(isinstance(p.shape[0], int) for p in parts):
            raise _fail(
                where,
                f"parts of {name!r} that differ only in a fixed size on axis 0",
                [p.shape for p in parts],
            )
        if first.batch_axis == 0:
            raise _fail(where, "parts stacked on axis 0, which is not their batch axis", name)
        size = sum(int(p.shape[0]) for p in parts)
        bases = {re.sub(r"\.l\d+$", "", p.output) for p in parts}  # outputs named as parts
        output = bases.pop() if len(bases) == 1 else " + ".join(p.output for p in parts)
        shape = [size, *first.shape[1:]]
        out.append(StateView(name, output, tuple(idx), shape, first.batch_axis, first.dtype))
    return out
