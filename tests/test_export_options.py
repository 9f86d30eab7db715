"""ExportOptions: how export, explain and export_model write a graph, as one value.

Checked when made (a bad value is an ExportError naming the field); the old keywords and
``options=`` write the same file; both for one field are refused before anything is
written.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner
from test_export_support import Net, X, build_bidirectional

from edgeseq.cli import main
from edgeseq.errors import ExportError
from edgeseq.exporters import ExportOptions, explain, export, export_model
from edgeseq.exporters.seq import explain_model
from edgeseq.train.models import SeqConfig, SeqModel

BAD = {
    "mode": ({"mode": "looped"}, "unknown export mode 'looped'; registered modes"),
    "chunk 0": ({"chunk": 0}, "chunk must be a positive int"),
    "chunk bool": ({"chunk": True}, "chunk must be a positive int"),
    "chunk float": ({"chunk": 4.0}, "chunk must be a positive int"),
    "backend": ({"backend": "jit"}, "backend must be one of"),
    "offline": ({"offline": "yes"}, "offline must be True or False"),
    "lengths": ({"lengths": 1}, "lengths must be True, False or None"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_are_refused_naming_the_field(case: str, tmp_path) -> None:
    kw, message = BAD[case]
    with pytest.raises(ExportError, match=message):
        ExportOptions(**kw)
    # the same value as a keyword is refused the same way, and nothing is written
    with pytest.raises(ExportError, match=message):
        export(Net("gru"), tmp_path / "m.onnx", example=X, **kw)
    with pytest.raises(ExportError, match=message):
        explain(Net("gru"), X, **kw)
    assert not list(tmp_path.iterdir())


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExportOptions().mode = "unrolled"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kw",
    [{"mode": "unrolled", "chunk": 4, "lengths": False}, {"lengths": True}],
    ids=["unrolled", "native+lengths"],
)
def test_keywords_and_options_write_the_same_graph(kw: dict, tmp_path) -> None:
    torch.manual_seed(0)
    model = Net("lstm")
    (tmp_path / "kw").mkdir(), (tmp_path / "opts").mkdir()  # one name: step files named alike
    by_kw = export(model, tmp_path / "kw" / "m.onnx", example=X, **kw)
    options = ExportOptions(**kw)
    by_opts = export(model, tmp_path / "opts" / "m.onnx", example=X, options=options)
    assert by_kw.to_json() == by_opts.to_json()
    assert by_opts.model.chunk == kw.get("chunk") and bool(by_opts.lengths) is kw["lengths"]
    assert explain(model, X, **kw) == explain(model, X, options=ExportOptions(**kw))


def test_offline_travels_in_options(tmp_path) -> None:
    model = build_bidirectional()
    with pytest.raises(ExportError, match="bidirectional"):
        export(model, tmp_path / "m.onnx", example=X, options=ExportOptions())
    contract = export(model, tmp_path / "m.onnx", example=X, options=ExportOptions(offline=True))
    assert contract.model.stateful is False
    assert explain(model, X, options=ExportOptions(offline=True)).streams


def test_export_model_takes_options(tmp_path) -> None:
    torch.manual_seed(0)
    model = SeqModel(SeqConfig(cell="gru", input_size=3, hidden_size=4, output_size=2))
    options = ExportOptions(mode="unrolled", chunk=3)
    (tmp_path / "kw").mkdir(), (tmp_path / "opts").mkdir()
    by_kw = export_model(model, tmp_path / "kw" / "m.onnx", mode="unrolled", chunk=3)
    by_opts = export_model(model, tmp_path / "opts" / "m.onnx", options=options)
    assert [c.to_json() for c in by_kw.values()] == [c.to_json() for c in by_opts.values()]
    assert len(by_opts) == 2  # the unrolled graph and its one-step graph
    assert [r.chunk for r in explain_model(model, options=options)] == [3]
    # an edgeseq model's topology decides offline
    with pytest.raises(ExportError, match="offline applies to export"):
        export_model(model, tmp_path / "off.onnx", options=ExportOptions(offline=True))
    assert not (tmp_path / "off.onnx").exists()


@pytest.mark.parametrize("call", ["export", "explain", "export_model"])
def test_options_and_a_keyword_for_one_field_are_refused(call: str, tmp_path) -> None:
    path = tmp_path / "m.onnx"

    def run(**kw):
        if call == "export":
            return export(Net("gru"), path, example=X, **kw)
        if call == "explain":
            return explain(Net("gru"), X, **kw)
        model = SeqModel(SeqConfig(cell="gru", input_size=3, hidden_size=4, output_size=2))
        return export_model(model, path, **kw)

    with pytest.raises(ExportError, match=r"got options= and also mode=, chunk=; expected"):
        run(mode="unrolled", chunk=4, options=ExportOptions(mode="unrolled"))
    with pytest.raises(ExportError, match="got options= and also backend="):
        run(backend="dynamo", options=ExportOptions())
    with pytest.raises(ExportError, match="options must be an ExportOptions"):
        run(options={"mode": "unrolled"})
    assert not path.exists()
    # keywords left at their defaults beside options= are no second choice
    run(mode=None, options=ExportOptions(mode="unrolled", chunk=2))
    if call != "explain":
        assert path.exists()


def test_cli_passes_the_options_and_refuses_a_bad_one_in_one_line(tmp_path) -> None:
    factory = ["export", "--factory", "test_export_support:build_user", "--example-shape", "2,4,3"]
    res = CliRunner().invoke(main, [*factory, "--explain", "--mode", "unrolled", "--chunk", "4"])
    assert res.exit_code == 0, res.output
    assert "mode 'unrolled' (4 frame(s) per graph call)" in res.output
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, [*factory, "-o", str(out), "--mode", "looped"])
    assert res.exit_code == 1 and "unknown export mode 'looped'" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()
