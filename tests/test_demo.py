"""`edgeseq demo` runs end to end and its report is honest arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    """The report's errors, recomputed here from the exported model's streamed outputs."""
    import numpy as np

    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.data import load_demo_series
    from edgeseq.train.demo import run_demo

    rep = run_demo(tmp_path, epochs=1, progress=False)  # the demo's model, one epoch
    assert rep.parity_max_abs <= 1e-5 and rep.chunked_parity_max_abs <= 1e-5
    assert rep.predictor_us_per_frame > 0 and rep.torch_us_per_frame > 0

    closes = load_demo_series()[1].astype(np.float64)
    returns = (100 * np.diff(np.log(closes))).astype(np.float32)  # % log return per day
    frames = returns[:-1]  # day t's return -> the model's forecast of day t+1's
    assert rep.train_days + rep.test_days == len(frames) == 3268
    assert rep.train_days == int(0.85 * len(frames))  # the last 15 % is held out
    predictor = StreamingPredictor(tmp_path / "model.onnx")
    streamed = np.array([predictor.step(f[None])[0] for f in frames], dtype=np.float64)

    held = slice(rep.train_days, None)
    today, tomorrow = closes[1:-1][held], closes[2:][held]  # each held-out day and the next
    forecast = today * np.exp(streamed[held] / 100)
    assert rep.mae == pytest.approx(np.mean(np.abs(forecast - tomorrow)), rel=1e-6)
    assert rep.naive_mae == pytest.approx(np.mean(np.abs(today - tomorrow)), rel=1e-12)
    moved = np.sign(tomorrow - today)
    hits = np.sign(streamed[held])[moved != 0] == moved[moved != 0]
    assert rep.direction_accuracy == pytest.approx(hits.mean(), abs=1e-12)

    table = rep.table()
    for label, value in [
        ("forecast MAE (held out)", f"${rep.mae:.3f}"),
        ("naive last-value MAE", f"${rep.naive_mae:.3f}"),
        ("MAE / naive MAE", f"{rep.mae / rep.naive_mae:.3f}"),
        ("direction accuracy", f"{100 * rep.direction_accuracy:.1f}%"),
    ]:
        assert any(ln.startswith(label) and ln.endswith(value) for ln in table.splitlines())

    # the README's demo block shows a default run: what does not depend on training
    # (the data split, the naive baseline, the model's size) is this run's, to the digit
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("\n## `make demo`\n", 1)[1].split("```")[1]
    shown = {ln.split("  ")[0]: ln.split("  ")[-1].strip() for ln in block.strip().splitlines()}
    for line in table.splitlines():
        label, value = line.split("  ")[0], line.split("  ")[-1].strip()
        if label in ("data", "model size", "naive last-value MAE"):
            assert shown[label] == value, f"README's {label!r}: {shown[label]!r}, a run: {value!r}"
