"""verify(): structured diffs over chunkings x batches, op checks, failure detection, CLI."""

from __future__ import annotations

import copy

import onnx
import pytest
import torch
from click.testing import CliRunner
from test_export_support import Net, UserNet

from edgeseq.cli import main
from edgeseq.errors import VerificationError
from edgeseq.exporters import TensorDiff, VerifyReport, export, export_model, verify
from edgeseq.exporters.export import check_ops
from edgeseq.train.checkpoint import save_checkpoint
from edgeseq.train.models import Seq2Seq, SeqConfig, SeqModel

X = torch.randn(2, 6, 3)


@pytest.fixture(scope="module")
def lstm_file(tmp_path_factory):
    torch.manual_seed(0)
    model = UserNet().eval()
    path = tmp_path_factory.mktemp("v") / "user.onnx"
    export(model, path, example=X, lengths=True)  # rows of different lengths in one call
    return model, path


def test_report_structure(lstm_file) -> None:
    model, path = lstm_file
    report = verify(model, path)
    assert isinstance(report, VerifyReport) and report.mode == "native"
    cases = sorted({d.case for d in report.diffs})
    assert len(cases) == 8
    assert any("batch 3 (lengths 11,7,3)" in c for c in cases)  # rows of different lengths
    assert any("chunks of 7" in c for c in cases) and any("whole" in c for c in cases)
    d = next(x for x in report.diffs if x.name == "y")
    assert isinstance(d, TensorDiff) and d.kind == "output"
    assert d.shape == d.expected_shape == (1, 11, 2) and d.dtype == "float32"
    assert d.max_abs <= 1e-5 and d.max_rel <= 1e-4 and d.ok(1e-5)
    # final states are compared: the rows name the graph outputs that return them
    assert {x.name for x in report.diffs if x.kind == "state"} == {
        "state_out.lstm.h",
        "state_out.lstm.c",
    }
    assert report.ok(1e-5) and not report.failures()
    table = report.table()
    assert "max abs" in table and "state_out.lstm.c" in table and table.endswith("PASS")
    assert "state_in" not in table
    assert len(report.table(per_case=True).splitlines()) > len(table.splitlines())
    report.raise_if_failed()


def test_time_and_chunkings_are_choices(lstm_file) -> None:
    model, path = lstm_file
    report = verify(model, path, time=5, chunkings=[2], batches=[1])
    assert {d.case for d in report.diffs} == {"batch 1, chunks of 2 (5 frames)"}


def test_other_weights_fail_by_tolerance(lstm_file) -> None:
    model, path = lstm_file
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.bias += 0.01
    report = verify(other, path)
    assert not report.ok(atol=1e-5)
    assert report.ok(atol=0.02)  # the caller decides
    assert all(d.shape_ok for d in report.diffs)
    with pytest.raises(VerificationError, match="differs by"):
        report.raise_if_failed(1e-5)
    assert "FAIL" in report.table()


def test_shape_mismatch_always_fails(lstm_file) -> None:
    _, path = lstm_file
    torch.manual_seed(0)
    report = verify(UserNet(out=3), path)  # a 3-wide head against a 2-wide graph
    assert not report.ok(atol=1e9, rtol=1e9)
    assert any("has shape" in f for f in report.failures(atol=1e9))


def test_op_types_are_checked_against_the_mode(lstm_file, tmp_path) -> None:
    _, path = lstm_file
    proto = onnx.load(str(path))
    assert check_ops(proto, "native") == []
    assert "must not contain ['LSTM']" in check_ops(proto, "unrolled")[0]
    report = VerifyReport(model="m", op_problems=check_ops(proto, "unrolled"))
    assert not report.ok() and "op types" in report.failures()[0]


def test_offline_models_are_verified_on_whole_sequences(tmp_path) -> None:
    model = Net("gru", bidirectional=True)
    export(model, tmp_path / "b.onnx", example=X, offline=True)
    report = verify(model, tmp_path / "b.onnx")
    assert report.ok(1e-5) and any("offline" in n for n in report.notes)
    assert report.mode == "offline" and "(mode offline," in report.table()
    assert all("whole" in d.case for d in report.diffs)


@pytest.mark.parametrize("topology", ["many_to_one", "one_to_many", "one_to_one", "seq2seq"])
def test_edgeseq_models_with_their_init_models(topology, tmp_path) -> None:
    torch.manual_seed(0)
    if topology == "seq2seq":
        enc = SeqConfig(cell="gru", input_size=3, hidden_size=6)
        dec = SeqConfig(cell="gru", input_size=4, hidden_size=6, vocab_size=9, output_size=9)
        model: SeqModel | Seq2Seq = Seq2Seq(enc, dec)
    else:
        cond = 5 if topology == "one_to_many" else None
        vocab = 7 if topology == "one_to_many" else None
        model = SeqModel(
            SeqConfig(
                cell="lstm", input_size=3, hidden_size=6, layers=2, topology=topology,
                condition_size=cond, vocab_size=vocab, output_size=vocab or 2,
            )
        )  # fmt: skip
    path = tmp_path / "m.onnx"
    files = export_model(model, path)
    report = verify(model, path)
    assert report.ok(1e-5), report.table(per_case=True)
    if len(files) > 1:  # the encoder / bridge was compared too
        other = next(p for p in files if p != str(path))
        assert any(d.name.startswith(other.rsplit("/", 1)[-1]) for d in report.diffs)


def test_cli_verify(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    model = SeqModel(SeqConfig(cell="gru", input_size=2, hidden_size=5))
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model)
    export_model(model, tmp_path / "m.onnx", mode="unrolled", chunk=4)
    run = CliRunner().invoke
    ok = run(main, ["verify", str(ckpt), str(tmp_path / "m.onnx")])
    assert ok.exit_code == 0, ok.output
    assert "PASS" in ok.output and "chunks of 1" in ok.output
    with torch.no_grad():
        model.head.bias += 1.0
    save_checkpoint(tmp_path / "other.pt", model)
    bad = run(main, ["verify", str(tmp_path / "other.pt"), str(tmp_path / "m.onnx")])
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines()[-1].startswith("Error: verification failed")
    missing = run(main, ["verify", "nowhere.pt", str(tmp_path / "m.onnx")])
    assert missing.exit_code == 1 and "neither a checkpoint file nor a factory" in missing.output
