"""`edgeseq demo` runs end to end and its report is honest arithmetic."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from edgeseq.cli import main


def test_demo_cli_writes_artifacts_and_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert (out / "model.pt").exists() and (out / "model.onnx").exists()
    for needle in (
        "parity, frame by frame",
        "latency per frame, StreamingPredictor",
        "naive last-value MAE",
        "model size",
    ):
        assert needle in r.output


def test_demo_report_values(tmp_path: Path) -> None:
    from edgeseq.train.demo import run_demo

    rep = run_demo(tmp_path, epochs=1, hidden_size=8, progress=False)
    assert rep.parity_max_abs <= 1e-5 and rep.chunked_parity_max_abs <= 1e-5
    assert rep.train_days + rep.test_days == 3268  # 3,270 closes -> 3,269 returns -> pairs
    assert 0 < rep.naive_mae < 10 and 0 < rep.mae < 10
    assert 0.0 <= rep.direction_accuracy <= 1.0
    assert rep.predictor_us_per_frame > 0 and rep.torch_us_per_frame > 0
