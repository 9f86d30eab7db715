"""edgeseq export: checkpoints and factories, --verify/--quantize/--ort, one-line errors."""

from __future__ import annotations

import sys

import pytest
import torch
from click.testing import CliRunner
from test_export_support import build_user

from edgeseq.cli import main
from edgeseq.exporters import VerifyReport
from edgeseq.exporters._report import TensorDiff
from edgeseq.runtime import StreamingPredictor
from edgeseq.train.checkpoint import save_checkpoint
from edgeseq.train.models import SeqConfig, SeqModel

SUPPORT = "test_export_support:"
SHAPE = ["--example-shape", "2,4,3"]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = SeqModel(SeqConfig(cell="lstm", input_size=2, hidden_size=6, layers=2))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, extra={"preprocessing": {"mean": [1.0, 2.0], "std": [2.0, 4.0]}})
    return path


def test_checkpoint_with_everything(ckpt, tmp_path) -> None:
    out = tmp_path / "m.onnx"
    res = run("export", ckpt, "-o", out, "--verify", "--quantize", "int8", "--ort")
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "int8" in res.output and "wrote" in res.output
    for name in ("m.onnx", "m.int8.onnx", "m.ort", "m.required_operators.config"):
        assert (tmp_path / name).is_file(), name
    contract = StreamingPredictor(out).contract
    assert contract.preprocessing.mean == [1.0, 2.0]  # the checkpoint's preprocessing travels
    assert StreamingPredictor(tmp_path / "m.ort").contract == contract


def test_unrolled_with_chunk(ckpt, tmp_path) -> None:
    res = run(
        "export", ckpt, "-o", tmp_path / "u.onnx", "--mode", "unrolled", "--chunk", "4", "--verify"
    )
    assert res.exit_code == 0, res.output
    assert StreamingPredictor(tmp_path / "u.onnx").contract.model.chunk == 4


def test_one_to_many_writes_every_graph_as_ort(tmp_path) -> None:
    model = SeqModel(
        SeqConfig(cell="gru", input_size=3, hidden_size=4, vocab_size=6, output_size=6,
                  topology="one_to_many", condition_size=5)
    )  # fmt: skip
    save_checkpoint(tmp_path / "cap.pt", model)
    res = run("export", tmp_path / "cap.pt", "-o", tmp_path / "cap.onnx", "--ort", "--verify")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cap.ort").is_file() and (tmp_path / "cap.init.ort").is_file()


def test_factory_with_weights(tmp_path, monkeypatch) -> None:
    model = build_user()
    with torch.no_grad():
        model.head.bias += 0.5  # the weights file must be what gets exported
    torch.save(model.state_dict(), tmp_path / "w.pt")
    res = run(
        "export", "--factory", "test_export_support:build_user", "--weights", tmp_path / "w.pt",
        "--example-shape", "2,8,3", "-o", tmp_path / "f.onnx", "--verify",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "state_in.lstm.h" in StreamingPredictor(tmp_path / "f.onnx").state  # shown whole
    res = run("verify", "test_export_support:build_user", tmp_path / "f.onnx")
    assert res.exit_code == 1  # without the weights the factory's model differs


def test_failed_verification_exits_non_zero(ckpt, tmp_path, monkeypatch) -> None:
    bad = VerifyReport(
        model="m",
        diffs=[TensorDiff("c", "y", "output", (1,), (1,), "float32", "float32", 1.0, 1.0)],
    )
    module = sys.modules["edgeseq.exporters.verify"]  # the package's `verify` is the function
    monkeypatch.setattr(module, "verify", lambda *a, **k: bad)
    res = run("export", ckpt, "-o", tmp_path / "m.onnx", "--verify")
    assert res.exit_code == 1 and "verification failed" in res.output


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "either CHECKPOINT or --factory"),
        (["--factory", f"{SUPPORT}build_user"], "needs an example input"),
        (["--factory", "nowhere.mod:build", *SHAPE], "cannot import 'nowhere.mod'"),
        (["--factory", f"{SUPPORT}nothing", *SHAPE], "no callable 'nothing'"),
        (["--factory", f"{SUPPORT}build_user", "--example-shape", "2,x,3"], "comma-separated"),
        (["--factory", f"{SUPPORT}build_bidirectional", *SHAPE], "layer 'rnn' is bidirectional"),
        (["--factory", f"{SUPPORT}build_user", *SHAPE, "--mode", "scan"], "unknown export mode"),
    ],
    ids=[
        "nothing",
        "no_example",
        "bad_module",
        "bad_function",
        "bad_shape",
        "bidirectional",
        "mode",
    ],
)
def test_user_errors_are_one_line(args, message, tmp_path) -> None:
    res = run("export", *args, "-o", tmp_path / "x.onnx")
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output


def test_offline_factory(tmp_path) -> None:
    res = run(
        "export", "--factory", "test_export_support:build_bidirectional", "--example-shape",
        "2,4,3", "--offline", "-o", tmp_path / "b.onnx", "--verify",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "no (offline)" in res.output


def test_checkpoint_errors(ckpt, tmp_path) -> None:
    res = run("export", ckpt, "-o", tmp_path / "x.onnx", "--offline")
    assert res.exit_code == 1 and "--offline applies to factory models" in res.output
    res = run("export", ckpt, "-o", tmp_path / "x.onnx", "--weights", ckpt)
    assert res.exit_code != 0 and "--weights goes with --factory" in res.output
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    res = run("export", tmp_path / "junk.pt", "-o", tmp_path / "x.onnx")
    assert res.exit_code == 1 and "not an edgeseq checkpoint" in res.output


def test_export_quantize_covers_the_seq2seq_encoder(tmp_path) -> None:
    """export --quantize writes a quantized encoder too, and the quantized decoder names it."""
    import numpy as np
    import torch
    from click.testing import CliRunner

    from edgeseq.cli import main
    from edgeseq.runtime import EncoderDecoder
    from edgeseq.train.checkpoint import save_checkpoint
    from edgeseq.train.models import Seq2Seq, SeqConfig

    torch.manual_seed(0)
    enc = SeqConfig(cell="lstm", input_size=4, hidden_size=8, output_size=2)
    dec = SeqConfig(
        cell="lstm", input_size=4, hidden_size=8, output_size=9, vocab_size=9, task="translate"
    )
    ckpt = tmp_path / "s2s.pt"
    save_checkpoint(ckpt, Seq2Seq(enc, dec))
    out = tmp_path / "s2s.onnx"
    r = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(out), "--quantize", "int8"])
    assert r.exit_code == 0, r.output
    q_dec, q_enc = tmp_path / "s2s.int8.onnx", tmp_path / "s2s.encoder.int8.onnx"
    assert q_dec.exists() and q_enc.exists()
    runner = EncoderDecoder(q_dec)
    assert runner.decoder.contract.model.extra["init_model"] == q_enc.name
    assert runner.encoder.contract.model.extra["quantization"]["kind"] == "int8"
    tokens = list(runner.greedy(np.random.default_rng(0).standard_normal((5, 4)), 2, 3, 5))
    assert all(0 <= t < 9 for t in tokens)
