"""The CLI as a person uses it: help texts, train -> stream, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeseq.cli import COMMANDS, main


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def test_every_command_has_teaching_help(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in main.list_commands(None):  # type: ignore[arg-type]
        assert name in COMMANDS
        r = runner.invoke(main, [name, "--help"])
        assert r.exit_code == 0, r.output
        assert "Example" in r.output, f"`edgeseq {name} --help` shows no example"


def test_train_forecast_csv_then_export_and_stream(runner: CliRunner, tmp_path: Path) -> None:
    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.checkpoint import load_checkpoint

    rng = np.random.default_rng(0)
    t = np.arange(300)
    csv = tmp_path / "sensor.csv"
    rows = ["time,temp,humidity"] + [
        f"{i},{20 + np.sin(i / 9) + 0.1 * rng.standard_normal():.4f},{50 + np.cos(i / 7):.4f}"
        for i in t
    ]
    csv.write_text("\n".join(rows) + "\n")
    ckpt = tmp_path / "s.pt"
    r = runner.invoke(
        main,
        [
            "train",
            "--task",
            "forecast",
            "--data",
            str(csv),
            "--columns",
            "temp,humidity",
            "--hidden",
            "8",
            "--epochs",
            "2",
            "-o",
            str(ckpt),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and ckpt.exists()

    model, extra = load_checkpoint(ckpt)
    assert model.config.input_size == 2
    onnx_path = tmp_path / "s.onnx"
    export_model(model, onnx_path, preprocessing=Preprocessing(**extra["preprocessing"]))
    feed = "temp,humidity\n" + "\n".join(",".join(line.split(",")[1:]) for line in rows[1:6]) + "\n"
    r = runner.invoke(main, ["stream", str(onnx_path)], input=feed)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 5 and all(len(ln.split(",")) == 2 for ln in lines), r.output

    # de-normalised forecasts are in the data's units (around 20 and 50), not z-scores
    first = [float(v) for v in lines[-1].split(",")]
    assert 10 < first[0] < 30 and 40 < first[1] < 60, first


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["inspect", "missing.onnx"], "does not exist"),
        (["stream", "missing.onnx"], "does not exist"),
        (["train", "--task", "forecast", "--data", "nope.csv", "-o", "x.pt"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_and_nonzero(
    runner: CliRunner, args: list[str], needle: str, tmp_path: Path
) -> None:
    r = runner.invoke(main, args)
    assert r.exit_code != 0
    assert needle in r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in r.output


def test_not_onnx_file_is_one_line_error(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    r = runner.invoke(main, ["inspect", str(bad)])
    assert r.exit_code == 1 and "could not load" in r.output and "Traceback" not in r.output


def test_cli_help_imports_neither_torch_nor_onnx() -> None:
    """The CLI is a thin shell: heavy imports happen inside the commands that need them."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom edgeseq.cli import main\n"
        "for args in (['--help'], ['stream', '--help'], ['inspect', '--help'], "
        "['export', '--help'], ['train', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxscript') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
