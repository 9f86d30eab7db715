"""Packaging: `make wheel` builds the device wheel the README tells users to install.

The wheel maps exporters/ and runtime/ under edgeseq and holds exactly the sources; a
fresh venv with that wheel and the device dependencies only (numpy, onnxruntime, click:
no torch, no onnx) streams an exported model through the installed `edgeseq` command and
through `edgeseq.runtime`, with the same outputs as the development install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE_DEPS = ("numpy", "onnxruntime", "click")
# what pip prints when the package registry cannot be reached (then the test is skipped)
OFFLINE = ("No matching distribution", "Could not fetch", "NewConnectionError", "resolution")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make wheel`, the README's command, into a temporary folder (the venv is this one)."""
    out = tmp_path_factory.mktemp("wheel")
    stamp = Path(sys.prefix) / ".edgeseq-installed"  # -o: never (re)install from here
    done = subprocess.run(
        ["make", "-s", "-o", str(stamp), "wheel", f"VENV={sys.prefix}", f"DIST={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
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


def test_wheel_holds_exactly_the_sources(wheel: Path) -> None:
    """No stale module from an old build/ folder (e.g. before a move) reaches a device."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    block = pyproject.split("[tool.setuptools.package-dir]", 1)[1].split("\n[", 1)[0]
    mapped = {  # "edgeseq.runtime" = "runtime" -> edgeseq/runtime: ROOT/runtime
        pkg.replace(".", "/"): ROOT / folder
        for pkg, folder in re.findall(r'^"([\w.]+)"\s*=\s*"([\w/]+)"', block, re.M)
    }
    assert len(mapped) >= 3, block
    sources = {
        f"{prefix}/{p.relative_to(folder).as_posix()}"
        for prefix, folder in mapped.items()
        for p in folder.rglob("*.py")
        if "__pycache__" not in p.parts
        # a mapped folder (runtime/) is not also a subfolder of another (edgeseq/)
        and not any(o != folder and o in p.parents and folder in o.parents for o in mapped.values())
    }
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    assert in_wheel == sources, (
        f"only in the wheel: {sorted(in_wheel - sources)}; missing: {sorted(sources - in_wheel)}"
    )


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


DEVICE_SCRIPT = """
import json, sys
import numpy as np
from edgeseq.runtime import StreamingPredictor
p = StreamingPredictor(sys.argv[1])
frames = np.asarray(json.loads(sys.argv[2]), dtype=np.float32)
ys = [p.step(f).tolist() for f in frames]
print(json.dumps({"ys": ys, "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules}))
"""


@pytest.mark.slow
def test_device_install_from_the_wheel_streams_without_torch(wheel: Path, tmp_path: Path) -> None:
    """The README's device path: a fresh venv, `pip install` the wheel, stream a model."""
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.models import SeqConfig, SeqModel

    venv = tmp_path / "device"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py, edgeseq = venv / "bin" / "python", venv / "bin" / "edgeseq"
    pins = [f"{name}=={version(name)}" for name in DEVICE_DEPS]  # the versions tested here
    done = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel), *pins],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0 and any(s in done.stderr for s in OFFLINE):
        reason = f"package registry unreachable for the device venv: {done.stderr.strip()[-300:]}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    assert done.returncode == 0, done.stderr
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    present = subprocess.run(
        [str(py), "-c", "import importlib.util as u; print([m for m in "
         "('torch', 'onnx', 'onnxscript', 'edgeseq') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=env,
    ).stdout.strip()  # fmt: skip
    assert present == "['edgeseq']", f"the device venv holds {present}"

    torch.manual_seed(0)
    cfg = SeqConfig(cell="gru", input_size=2, hidden_size=8, output_size=2)
    cfg.extra["features"] = ["temp", "rh"]
    scale = {"mean": [20.0, 50.0], "std": [2.0, 5.0]}
    prep = Preprocessing(**scale, out_mean=scale["mean"], out_std=scale["std"])
    model_path = tmp_path / "m.onnx"
    export_model(SeqModel(cfg), model_path, preprocessing=prep)
    rng = np.random.default_rng(0)
    frames = np.stack([20 + 2 * rng.standard_normal(12), 50 + 5 * rng.standard_normal(12)], 1)
    frames = frames.astype(np.float32)
    reference = StreamingPredictor(model_path)
    want = np.stack([reference.step(f) for f in frames])

    # the installed command: the CSV has a timestamp column, picked out by the recorded names
    csv = tmp_path / "log.csv"
    csv.write_text(
        "time,rh,temp\n"
        + "".join(f"2024-05-01T10:{i:02d},{rh:.6f},{t:.6f}\n" for i, (t, rh) in enumerate(frames))
    )
    run = subprocess.run(
        [str(edgeseq), "stream", str(model_path), "-i", str(csv)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = np.array([[float(v) for v in ln.split(",")] for ln in run.stdout.splitlines()])
    np.testing.assert_allclose(got, want, atol=1e-4)  # 6 decimals on the CSV's way in and out
    assert "12 frames streamed" in run.stderr

    # the library: edgeseq.runtime in the device's python, torch and onnx never imported
    run = subprocess.run(
        [str(py), "-c", DEVICE_SCRIPT, str(model_path), json.dumps(frames.tolist())],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert not report["torch"] and not report["onnx"]
    np.testing.assert_allclose(np.array(report["ys"]), want, atol=1e-6)

    # a training command says what to install, in one line
    run = subprocess.run(
        [str(edgeseq), "train", "--task", "forecast", "--data", "ibm", "-o", "x.pt"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1 and "pip install 'edgeseq[torch]'" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not os.path.exists(tmp_path / "x.pt")
