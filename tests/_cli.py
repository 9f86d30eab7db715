"""The real `edgeseq` command in a subprocess, and the models the CLI tests share.

``edgeseq(*args)`` runs the console script installed beside this Python (what a user
types), with bytes or text on stdin. ``sensor()`` trains and exports, through that same
command and once per test process, a small forecaster on a CSV with a timestamp column
and three numeric ones.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["COLUMNS", "EDGESEQ", "Sensor", "edgeseq", "one_error_line", "sensor"]

EDGESEQ = Path(sys.executable).with_name("edgeseq")
TESTS = Path(__file__).resolve().parent
COLUMNS = ("temp", "rh", "pressure")


def edgeseq(
    *args: object,
    input: str | bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``edgeseq ARGS``; stdout and stderr come back as text."""
    assert EDGESEQ.exists(), f"the edgeseq console script is not installed at {EDGESEQ}"
    data = input.encode() if isinstance(input, str) else input
    done = subprocess.run(
        [str(EDGESEQ), *map(str, args)],
        input=data,
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed (asserting there is exactly one)."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "Traceback" not in done.stderr and "Usage:" not in done.stderr
    return lines[0]


@dataclass(frozen=True)
class Sensor:
    folder: Path
    csv: Path  # time,temp,rh,pressure with a header
    checkpoint: Path
    model: Path
    frames: np.ndarray  # (N, 3) the numeric columns, float32
    train_output: str


@functools.cache
def sensor() -> Sensor:
    folder = Path(tempfile.mkdtemp(prefix="edgeseq-cli-"))
    atexit.register(shutil.rmtree, folder, True)
    rng = np.random.default_rng(0)
    i = np.arange(240)
    frames = np.stack(
        [
            20 + np.sin(i / 9) + 0.1 * rng.standard_normal(len(i)),
            50 + 5 * np.cos(i / 7),
            1013 + np.sin(i / 20),
        ],
        axis=1,
    ).round(3)
    csv = folder / "sensor.csv"
    csv.write_text(
        "time," + ",".join(COLUMNS) + "\n"
        + "".join(f"2024-05-01T{k // 60:02d}:{k % 60:02d},{a},{b},{c}\n"
                  for k, (a, b, c) in enumerate(frames))
    )  # fmt: skip
    checkpoint = folder / "not" / "yet" / "there" / "s.pt"  # train creates the folders
    done = edgeseq(
        "train", "--task", "forecast", "--data", csv, "--hidden", "8", "--epochs", "1",
        "-o", checkpoint,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = folder / "s.onnx"
    exported = edgeseq("export", checkpoint, "-o", model)
    assert exported.returncode == 0, exported.stderr
    return Sensor(folder, csv, checkpoint, model, frames.astype(np.float32), done.stdout)


@functools.cache
def offline_model() -> Path:
    """A bidirectional GRU (3 features) exported with --offline through the CLI."""
    folder = Path(tempfile.mkdtemp(prefix="edgeseq-cli-offline-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "bi.onnx"
    done = edgeseq(
        "export", "--factory", "test_export_support:build_bidirectional",
        "--example-shape", "2,8,3", "--offline", "-o", path, cwd=TESTS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path
