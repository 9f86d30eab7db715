"""``edgeseq stream`` cases for runtime-js's CLI tests: CSV files of every kind (good,
semicolon-separated, bad, NaN, messy lines, wide with other column orders) and what the
Python CLI prints for each. Called by ``tests/js_fixtures.py write``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["stream_cli"]


def _cli_case(model: Path, csv: Path, *args: str) -> dict[str, Any]:
    from click.testing import CliRunner

    from edgeseq.cli import main

    res = CliRunner().invoke(main, ["stream", str(model), "-i", str(csv), *args])
    return {
        "model": model.name,
        "csv": csv.name,
        "args": list(args),
        "stdout": res.stdout,
        "stderr": res.stderr,
        "exit_code": res.exit_code,
    }


def stream_cli(out: Path, x: np.ndarray) -> list[dict[str, Any]]:
    good = out / "frames.csv"
    lines = ["a,b,c", "# a comment", *(",".join(repr(float(v)) for v in row) for row in x[:8]), ""]
    lines.insert(5, "")
    lines += ["0.0078125,-0.0078125,1e-07", "  3.5 , -2 ,1_000  "]  # ties, exponents, spaces
    good.write_text("\n".join(lines) + "\n")
    semi = out / "frames-semicolon.csv"
    semi.write_text("\n".join(";".join(repr(float(v)) for v in row) for row in x[:5]) + "\n")
    bad = out / "frames-bad.csv"
    bad.write_text("1,2,3\n4,5,6\n7,oops,9\n1,1,1\n")
    nan = out / "frames-nan.csv"
    nan.write_text("1,2,3\nnan,5,6\n")
    # every kind of bad line (edgeseq/cli/_frames.py), stopped at or skipped
    messy = out / "frames-messy.csv"
    messy.write_bytes(b"a,b,c\n1,2,3\n1,,3\n4,5,6,\n7,8\nx,y,z\n1e39,1,1\n\xff1,2,3\n0.5,1_0,-2\n"
                      b"1,16777217,3\n-16777219,2,3\n16777216,+33554432,16777217.0\n")  # fmt: skip
    wide = out / "frames-wide.csv"  # more columns than the model takes, in another order
    wide.write_text("t,c,b,a\n" + "".join(f"{k},{r[2]!r},{r[1]!r},{r[0]!r}\n"
                                           for k, r in enumerate(x[:6].tolist())))  # fmt: skip
    return [
        _cli_case(out / "scaled.onnx", good),
        _cli_case(out / "classifier.onnx", good),
        _cli_case(out / "classifier.onnx", good, "--format", "json"),
        _cli_case(out / "lstm-unrolled.onnx", semi, "-d", ";"),
        _cli_case(out / "lstm-native.onnx", bad),
        _cli_case(out / "lstm-native.onnx", nan),
        _cli_case(out / "lstm-native.onnx", messy),
        _cli_case(out / "lstm-native.onnx", messy, "--on-error", "skip"),
        _cli_case(out / "lstm-native.onnx", wide),
        _cli_case(out / "lstm-native.onnx", wide, "--columns", "a,b,c"),
        _cli_case(out / "lstm-native.onnx", wide, "--columns", "4,3,2"),
    ]
