"""Packaging: the wheel maps exporters/ and runtime/ under edgeseq, and nothing else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (found,) = out.glob("edgeseq-*.whl")
    return found


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"edgeseq"}, f"unexpected top-level entries in the wheel: {tops}"
    for must in (
        "edgeseq/runtime/__init__.py",
        "edgeseq/runtime/predictor.py",
        "edgeseq/exporters/__init__.py",
        "edgeseq/exporters/export.py",
        "edgeseq/exporters/triton/_model_py.py",  # written as a repository's model.py
        "edgeseq/contract.py",
        "edgeseq/contract.schema.json",
        "edgeseq/cli/__init__.py",
        "edgeseq/train/datasets/ibm_close.csv",
    ):
        assert must in names, f"{must} missing from the wheel"
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    base = [ln for ln in text.splitlines() if ln.startswith("Requires-Dist:") and "extra" not in ln]
    assert sorted(ln.split()[1].split(">")[0].split("=")[0] for ln in base) == [
        "click",
        "numpy",
        "onnxruntime",
    ], base
    assert any("torch" in ln and 'extra == "torch"' in ln for ln in text.splitlines())


def test_wheel_installs_and_imports_without_top_level_packages(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert not (target / "runtime").exists() and not (target / "exporters").exists()
    code = (
        "import edgeseq.runtime, edgeseq.contract, sys;"
        "assert edgeseq.runtime.__file__.startswith(sys.argv[1]), edgeseq.runtime.__file__;"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(target)],
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
