"""Reading a contract from its JSON form: every field is checked as it is read, and each
failure is a :class:`~edgeseq.errors.ContractError` naming the field, what it should be, and
what to do.

Used by :mod:`edgeseq.contract` (``from_dict`` of :class:`~edgeseq.contract.Contract`,
:class:`~edgeseq.contract.TensorSpec` and :class:`~edgeseq.contract.StatePair`), which stays
the front door; the rules a parsed contract must meet beyond its JSON shape live in
:mod:`edgeseq._contract_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgeseq._contract_rules import check_producer, check_rules
from edgeseq.errors import ContractError

if TYPE_CHECKING:
    from edgeseq.contract import Contract, Dim, StatePair, TensorSpec

__all__ = ["contract_from_dict", "fail", "state_pair_from_dict", "tensor_from_dict"]

_DTYPES = ("float32", "float16", "float64", "int64", "int32", "bool", "uint8", "int8")


def fail(field_path: str, expected: str, got: Any) -> ContractError:
    return ContractError(
        f"contract field {field_path!r}: expected {expected}, got {got!r}. "
        "Re-export the model with edgeseq, or pass the state pairs explicitly "
        "(StreamingPredictor(model, state={...}))."
    )


def _check_shape(path: str, shape: Any) -> list[Dim]:
    if not isinstance(shape, list) or not all(
        (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or (isinstance(d, str) and d)
        for d in shape
    ):
        raise fail(path, "a list of non-negative ints and axis names", shape)
    return shape


def _check_axis(path: str, axis: Any, rank: int, optional: bool = False) -> int | None:
    if axis is None and optional:
        return None
    if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < rank:
        raise fail(path, f"an axis index in [0, {rank})" + (" or null" if optional else ""), axis)
    return axis


def _check_dtype(path: str, dtype: Any) -> str:
    if dtype not in _DTYPES:
        raise fail(path, f"one of {list(_DTYPES)}", dtype)
    return dtype


def tensor_from_dict(cls: type[TensorSpec], d: Mapping[str, Any], path: str) -> TensorSpec:
    """A :class:`~edgeseq.contract.TensorSpec` from its JSON object at ``path``."""
    if not isinstance(d, Mapping) or not isinstance(d.get("name"), str) or not d["name"]:
        raise fail(
            f"{path}.name", "a non-empty string", d.get("name") if isinstance(d, Mapping) else d
        )
    shape = _check_shape(f"{path}.shape", d.get("shape"))
    return cls(
        name=d["name"],
        shape=shape,
        dtype=_check_dtype(f"{path}.dtype", d.get("dtype", "float32")),
        batch_axis=_check_axis(f"{path}.batch_axis", d.get("batch_axis"), len(shape), True),
        time_axis=_check_axis(f"{path}.time_axis", d.get("time_axis"), len(shape), True),
    )


def state_pair_from_dict(cls: type[StatePair], d: Mapping[str, Any], path: str) -> StatePair:
    """A :class:`~edgeseq.contract.StatePair` from its JSON object at ``path``."""
    if not isinstance(d, Mapping):
        raise fail(path, "an object", d)
    for key in ("input", "output"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise fail(f"{path}.{key}", "a non-empty graph tensor name", d.get(key))
    shape = _check_shape(f"{path}.shape", d.get("shape"))
    init = d.get("init", "zeros")
    if init != "zeros" and not (
        isinstance(init, list) and all(isinstance(v, (int, float)) for v in init)
    ):
        raise fail(f"{path}.init", '"zeros" or a list of numbers', init)
    axis = _check_axis(f"{path}.batch_axis", d.get("batch_axis", 1), len(shape), True)
    part_of = d.get("part_of")
    if part_of is not None and (not isinstance(part_of, str) or not part_of):
        raise fail(
            f"{path}.part_of", "the name of the state this pair is a part of, or null", part_of
        )
    return cls(
        input=d["input"],
        output=d["output"],
        shape=shape,
        batch_axis=axis,  # type: ignore[arg-type]
        dtype=_check_dtype(f"{path}.dtype", d.get("dtype", "float32")),
        init=init,
        part_of=part_of,
    )


def contract_from_dict(cls: type[Contract], data: Any) -> Contract:
    """A :class:`~edgeseq.contract.Contract` from its parsed JSON, every field checked."""
    from edgeseq.contract import (  # the types live there; it imports this module
        CONTRACT_VERSION,
        ModelFacts,
        Preprocessing,
        StatePair,
        TensorSpec,
    )

    if not isinstance(data, Mapping):
        raise fail("<root>", "a JSON object", type(data).__name__)
    version = data.get("version")
    if version != CONTRACT_VERSION:
        raise ContractError(
            f"contract field 'version': expected {CONTRACT_VERSION}, got {version!r}. "
            "The model was written by another edgeseq release: upgrade edgeseq or re-export."
        )
    for key in ("inputs", "outputs"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise fail(key, "a non-empty list of tensors", data.get(key))
    states = data.get("states", [])
    if not isinstance(states, list):
        raise fail("states", "a list of state pairs", states)
    facts = data.get("model", {})
    prep = data.get("preprocessing", {})
    if not isinstance(facts, Mapping):
        raise fail("model", "an object", facts)
    if not isinstance(prep, Mapping):
        raise fail("preprocessing", "an object", prep)
    try:
        model = ModelFacts(**facts)
        preprocessing = Preprocessing(**prep)
    except TypeError as exc:  # unknown or missing keys
        raise ContractError(f"contract field 'model' or 'preprocessing': {exc}") from None
    for name in ("mean", "std", "out_mean", "out_std"):
        vals = getattr(preprocessing, name)
        if vals is not None and not (
            isinstance(vals, list) and all(isinstance(v, (int, float)) for v in vals)
        ):
            raise fail(f"preprocessing.{name}", "a list of numbers or null", vals)
    if preprocessing.std is not None and any(v == 0 for v in preprocessing.std):
        raise fail("preprocessing.std", "non-zero scales", preprocessing.std)
    if preprocessing.vocab is not None and not (
        isinstance(preprocessing.vocab, list)
        and all(isinstance(v, str) for v in preprocessing.vocab)
    ):
        raise fail("preprocessing.vocab", "a list of strings or null", "…")
    lengths = data.get("lengths")
    if lengths is not None and not isinstance(lengths, str):
        raise fail("lengths", "a graph input name or null", lengths)
    constants = data.get("constants", [])
    if not isinstance(constants, list) or not all(isinstance(c, str) for c in constants):
        raise fail("constants", "a list of input names", constants)
    memory = data.get("memory", [])  # absent from contracts written before memory existed
    if not isinstance(memory, list) or not all(isinstance(m, str) for m in memory):
        raise fail("memory", "a list of state input names", memory)
    state_inputs = {d.get("input") for d in states if isinstance(d, Mapping)}
    if any(m not in state_inputs for m in memory):
        raise fail("memory", f"names among the state inputs {sorted(state_inputs)}", memory)
    check_producer(data.get("producer", {}))
    contract = cls(
        inputs=[TensorSpec.from_dict(d, f"inputs[{i}]") for i, d in enumerate(data["inputs"])],
        outputs=[TensorSpec.from_dict(d, f"outputs[{i}]") for i, d in enumerate(data["outputs"])],
        states=[StatePair.from_dict(d, f"states[{i}]") for i, d in enumerate(states)],
        lengths=lengths,
        constants=list(constants),
        memory=list(memory),
        model=model,
        preprocessing=preprocessing,
        producer=dict(data.get("producer", {})),
        version=version,
    )
    check_rules(contract)
    _ = contract.features  # malformed feature names fail at load, not mid-stream
    return contract
