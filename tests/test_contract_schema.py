"""The contract's JSON Schema: versioned, in step with contract.py, met by every kind of file.

``tests/conftest.py`` also validates every contract any test writes; here the schema is
checked against the dataclasses it describes and against files of every kind, read back
from their ONNX metadata the way another language would.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
import torch
from _models import zoo
from click.testing import CliRunner
from test_contract import make_contract
from test_export_support import Net

from edgeseq.cli import main
from edgeseq.contract import (
    CONTRACT_VERSION,
    METADATA_KEY,
    Contract,
    ModelFacts,
    Preprocessing,
    StatePair,
    TensorSpec,
    json_schema,
)
from edgeseq.errors import ContractError
from edgeseq.exporters import export, export_model, quantize
from edgeseq.train.models import SeqConfig, SeqModel

SCHEMA = json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _stored(path: Path) -> dict:
    """The contract JSON exactly as stored in the file's metadata."""
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props[METADATA_KEY])


def test_schema_is_valid_and_versioned_with_the_contract() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["version"]["const"] == CONTRACT_VERSION
    assert SCHEMA["$id"].endswith(f":v{CONTRACT_VERSION}")
    assert str(CONTRACT_VERSION) in SCHEMA["title"]


@pytest.mark.parametrize(
    ("cls", "where"),
    [
        (Contract, SCHEMA),
        (TensorSpec, SCHEMA["$defs"]["tensor"]),
        (StatePair, SCHEMA["$defs"]["state"]),
        (ModelFacts, SCHEMA["$defs"]["model"]),
        (Preprocessing, SCHEMA["$defs"]["preprocessing"]),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_schema_describes_every_field_with_its_default(cls, where) -> None:
    """A field added to contract.py without the schema (or the reverse) fails here."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(where["properties"]) == set(fields), "update edgeseq/contract.schema.json"
    for name, f in fields.items():
        prop = where["properties"][name]
        if "$ref" in prop and "default" not in prop:
            continue
        if f.default is not dataclasses.MISSING:
            assert prop.get("default", f.default) == f.default, name
        elif f.default_factory is not dataclasses.MISSING and "default" in prop:
            assert prop["default"] == f.default_factory(), name


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of every kind edgeseq writes."""
    root = tmp_path_factory.mktemp("schema")
    torch.manual_seed(0)
    out = {name: zoo.get(name) for name in ("lstm", "scaled", "char_lm", "seq2seq")}
    out["seq2seq.encoder"] = out["seq2seq"].with_name("seq2seq.encoder.onnx")
    x = torch.randn(2, 5, 3)
    export(Net("gru"), root / "lengths.onnx", example=x, lengths=True)
    out["lengths"] = root / "lengths.onnx"
    export(Net("lstm"), root / "u.onnx", example=x, mode="unrolled", chunk=4)
    out["unrolled"], out["unrolled.step"] = root / "u.onnx", root / "u.step.onnx"
    export(Net("gru", bidirectional=True), root / "off.onnx", example=x, offline=True)
    out["offline"] = root / "off.onnx"
    cfg = SeqConfig(
        cell="gru", input_size=3, hidden_size=6, topology="one_to_many", condition_size=4
    )
    export_model(SeqModel(cfg), root / "gen.onnx")
    out["one_to_many"], out["one_to_many.init"] = root / "gen.onnx", root / "gen.init.onnx"
    quantize(out["unrolled"], root / "u.int8.onnx", "int8")
    out["int8"], out["int8.step"] = root / "u.int8.onnx", root / "u.int8.step.onnx"
    res = CliRunner().invoke(
        main,
        ["inspect", str(zoo.get("vad")), "--constant", "sr", "--context", "4",
         "--write-contract", str(root / "vad.onnx")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out["discovered"] = root / "vad.onnx"
    return out


KINDS = [
    "lstm", "scaled", "char_lm", "seq2seq", "seq2seq.encoder", "lengths", "unrolled",
    "unrolled.step", "offline", "one_to_many", "one_to_many.init", "int8", "int8.step",
    "discovered",
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_file_follows_the_schema(files: dict[str, Path], kind: str) -> None:
    data = _stored(files[kind])
    errors = [e.message for e in VALIDATOR.iter_errors(data)]
    assert not errors, errors
    assert Contract.from_dict(data).to_dict() == data  # and it is the contract edgeseq reads


def test_step_graph_is_named_with_its_digest(files: dict[str, Path]) -> None:
    for main_kind, step_kind in (("unrolled", "unrolled.step"), ("int8", "int8.step")):
        ref = _stored(files[main_kind])["model"]["extra"]["step_model"]
        step = _stored(files[step_kind])
        assert files[main_kind].with_name(ref["file"]) == files[step_kind]
        assert ref["weights_sha256"] == step["producer"]["weights_sha256"]
        assert step["model"]["chunk"] == 1 and step["model"]["extra"]["role"] == "step"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=99),
        lambda d: d.update(inputs=[]),
        lambda d: d["inputs"][0].update(shape="batch"),
        lambda d: d["inputs"][0].update(dtype="complex64"),
        lambda d: d["states"][0].update(input=""),
        lambda d: d["states"][0].update(init="ones"),
        lambda d: d.update(lengths=5),
        lambda d: d["model"].update(colour="red"),
        lambda d: d["preprocessing"].update(vocab=[1, 2]),
    ],
)
def test_schema_refuses_what_edgeseq_refuses(mutate) -> None:
    data = json.loads(make_contract().to_json())
    mutate(data)
    assert not VALIDATOR.is_valid(data)
    with pytest.raises(ContractError):
        Contract.from_dict(data)


def test_a_minimal_contract_is_valid_and_loads() -> None:
    """Only version, inputs and outputs are required; everything else has a default."""
    data = {
        "version": CONTRACT_VERSION,
        "inputs": [{"name": "x", "shape": ["batch", "time", 3]}],
        "outputs": [{"name": "y", "shape": ["batch", "time", 2]}],
    }
    assert VALIDATOR.is_valid(data)
    c = Contract.from_dict(data)
    assert c.states == [] and c.lengths is None and c.model == ModelFacts()
    assert np.dtype(c.frames.dtype) == np.float32
