"""The state contract: round trip, validation naming the bad field, graph agreement."""

from __future__ import annotations

import json

import pytest

from edgeseq.contract import (
    METADATA_KEY,
    Contract,
    GraphIO,
    ModelFacts,
    Preprocessing,
    StatePair,
    TensorSpec,
)
from edgeseq.errors import ContractError


def make_contract() -> Contract:
    return Contract(
        inputs=[TensorSpec("x", ["batch", "time", 4], "float32", 0, 1)],
        outputs=[
            TensorSpec("y", ["batch", "time", 3], "float32", 0, 1),
            TensorSpec("state_out.rnn.h", [2, "batch", 8], "float32", 1, None),
        ],
        states=[StatePair("state_in.rnn.h", "state_out.rnn.h", [2, "batch", 8], 1)],
        lengths="lengths",
        model=ModelFacts(cell="gru", layers=2, hidden_size=8, topology="many_to_many"),
        preprocessing=Preprocessing(mean=[0.0] * 4, std=[1.0] * 4),
    )


def graph() -> tuple[list[GraphIO], list[GraphIO]]:
    ins = [
        GraphIO("x", ["batch", "time", 4], "float32"),
        GraphIO("state_in.rnn.h", [2, "batch", 8], "float32"),
        GraphIO("lengths", ["batch"], "int32"),
    ]
    outs = [
        GraphIO("y", ["batch", "time", 3], "float32"),
        GraphIO("state_out.rnn.h", [2, "batch", 8], "float32"),
    ]
    return ins, outs


def test_round_trip_is_exact_and_hash_stable() -> None:
    c = make_contract()
    back = Contract.from_json(c.to_json())
    assert back == c
    assert back.hash() == c.hash()
    assert back.data_outputs()[0].name == "y"
    assert back.state_inputs == ["state_in.rnn.h"]


def test_matching_graph_passes() -> None:
    make_contract().check_graph(*graph())


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(inputs=[]), "inputs"),
        (lambda d: d["inputs"][0].update(shape="batch"), "inputs[0].shape"),
        (lambda d: d["inputs"][0].update(dtype="complex64"), "inputs[0].dtype"),
        (lambda d: d["inputs"][0].update(batch_axis=7), "inputs[0].batch_axis"),
        (lambda d: d["states"][0].update(input=""), "states[0].input"),
        (lambda d: d["states"][0].update(init="ones"), "states[0].init"),
        (lambda d: d["states"][0].update(batch_axis=3), "states[0].batch_axis"),
        (lambda d: d["preprocessing"].update(std=[1.0, 0.0, 1.0, 1.0]), "preprocessing.std"),
        (lambda d: d.update(lengths=5), "lengths"),
        (lambda d: d["model"].update(colour="red"), "model"),
        (lambda d: d["model"].update(extra="abc"), "model.extra"),
        (lambda d: d["model"].update(chunk="abc"), "model.chunk"),
        (lambda d: d["model"].update(stateful="no"), "model.stateful"),
        (lambda d: d["states"][0].update(init=[0.0] * 15), "states[0].init"),
        (lambda d: d["states"][0].update(init=[float("nan")] * 16), "states[0].init"),
        (lambda d: d["states"][0].update(batch_axis=0), "states[0].batch_axis"),
        (lambda d: d["outputs"][0].update(batch_axis=2), "outputs[0].batch_axis"),
        (lambda d: d["inputs"][0].update(time_axis=0), "inputs[0].time_axis"),  # = batch
        (lambda d: d.update(producer=["edgeseq"]), "producer"),
        (lambda d: d["preprocessing"].update(mean=[0.0] * 3), "preprocessing.mean"),
        (lambda d: d["preprocessing"].update(std=[1e-40] * 4), "preprocessing.std"),
        (lambda d: d["preprocessing"].update(out_std=[float("inf")]), "preprocessing.out_std"),
        (lambda d: d["model"]["extra"].update(features="temp"), "model.extra.features"),
        (lambda d: d["model"]["extra"].update(features=["a", ""]), "model.extra.features"),
    ],
)
def test_malformed_contract_names_the_field(mutate, field: str) -> None:
    data = json.loads(make_contract().to_json())
    mutate(data)
    with pytest.raises(ContractError, match=f"'{__import__('re').escape(field)}"):
        Contract.from_json(json.dumps(data))


def test_feature_names_are_optional() -> None:
    """Contracts written before names were recorded load unchanged, hash and all."""
    old = make_contract()
    assert old.features is None and "features" not in old.to_json()
    named = Contract.from_json(
        old.to_json().replace('"extra":{}', '"extra":{"features":["a","b","c","d"]}')
    )
    assert named.features == ["a", "b", "c", "d"] and named.hash() != old.hash()


def test_not_json_and_missing_metadata() -> None:
    with pytest.raises(ContractError, match="not valid JSON"):
        Contract.from_json("{broken")
    with pytest.raises(ContractError, match="not valid JSON"):  # not a RecursionError
        Contract.from_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ContractError, match=METADATA_KEY):
        Contract.from_metadata({}, source="m.onnx")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda ins, outs: ins.pop(1), "states[0].input"),
        (lambda ins, outs: outs.pop(0), "outputs[0].name"),
        (
            lambda ins, outs: ins.__setitem__(0, GraphIO("x", ["batch", "time", 5], "float32")),
            "inputs[0].name shape",
        ),
        (
            lambda ins, outs: ins.__setitem__(0, GraphIO("x", ["batch", "time", 4], "int64")),
            "inputs[0].name dtype",
        ),
        (lambda ins, outs: ins.append(GraphIO("extra", [1], "float32")), "inputs"),
    ],
)
def test_contract_disagreeing_with_graph_is_refused(edit, field: str) -> None:
    ins, outs = graph()
    edit(ins, outs)
    with pytest.raises(ContractError, match=__import__("re").escape(f"'{field}'")):
        make_contract().check_graph(ins, outs)
