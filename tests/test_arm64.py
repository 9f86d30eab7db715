"""edgeseq on aarch64 under qemu user-mode emulation (scripts/arm64_env.py).

The first run builds the cached environment (Debian's arm64 python3.11, aarch64 wheels:
about 10 s with the registries reachable); later runs reuse it. Skipped, with the reason,
when qemu-user-static cannot be found or installed or the apt/pip downloads fail.
Run alone with ``pytest -m arm64 -rs``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("arm64_env", ROOT / "scripts" / "arm64_env.py")
arm64_env = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("arm64_env", arm64_env)  # dataclasses look their module up
_spec.loader.exec_module(arm64_env)
_spec = importlib.util.spec_from_file_location("arm64_stream", ROOT / "scripts" / "arm64_stream.py")
arm64_stream = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(arm64_stream)

pytestmark = [pytest.mark.arm64, pytest.mark.timeout(1800)]
CHUNKS = (1, 3, 7)
TOL = 1e-5


@pytest.fixture(scope="module")
def arm():
    try:
        return arm64_env.ensure_env()
    except (arm64_env.Arm64SetupError, OSError, subprocess.SubprocessError) as e:
        reason = f"aarch64 emulation unavailable: {e}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).standard_normal((24, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def plain_lstm(tmp_path_factory) -> Path:
    """A tiny LSTM exported with torch.onnx only: x [T, 8], h0/c0 [1, 1, 16] -> y, hn, cn."""
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(8, 16)
            self.head = torch.nn.Linear(16, 4)

        def forward(self, x, h, c):
            y, (h, c) = self.lstm(x.unsqueeze(1), (h, c))
            return self.head(y.squeeze(1)), h, c

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("arm64") / "plain_lstm.onnx"
    args = (torch.randn(5, 8), torch.zeros(1, 1, 16), torch.zeros(1, 1, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Tiny().eval(),
            args,
            str(path),
            input_names=["x", "h0", "c0"],
            output_names=["y", "hn", "cn"],
            dynamo=False,
            dynamic_axes={"x": {0: "time"}, "y": {0: "time"}},
        )
    return path


def _joined(result: dict, chunk: int, name: str) -> np.ndarray:
    return np.concatenate(
        [call[name].reshape(-1, call[name].shape[-1]) for call in result["chunks"][chunk]["calls"]]
    )


def test_plain_onnxruntime_matches_x86(arm, plain_lstm, frames):
    on_arm = arm64_stream.stream_on_aarch64(plain_lstm, CHUNKS, frames, mode="ort", arm_env=arm)
    on_x86 = arm64_stream.stream_local(plain_lstm, CHUNKS, frames, mode="ort")
    for c in CHUNKS:
        assert len(on_arm["chunks"][c]["calls"]) == -(-len(frames) // c)
        assert arm64_stream.max_abs_diff(on_x86, on_arm, c) <= TOL, f"chunk {c}"
        # streaming in chunks of c gives the frame-by-frame outputs
        np.testing.assert_allclose(_joined(on_arm, c, "y"), _joined(on_arm, 1, "y"), atol=TOL)
    assert not on_arm["torch_loaded"]


def test_aarch64_site_has_no_torch(arm):
    for site in arm.site_dirs:
        found = [p.name for p in site.iterdir() if p.name.lower().startswith("torch")]
        assert not found, f"torch in the aarch64 site {site}: {found}"
    probe = """if True:
        import importlib.util, json, platform, sys
        try:
            import edgeseq.runtime
            status = "ok"
        except ModuleNotFoundError as e:
            status = "missing " + str(e.name)
        print(json.dumps({"machine": platform.machine(), "status": status,
                          "torch_findable": importlib.util.find_spec("torch") is not None,
                          "torch_loaded": "torch" in sys.modules}))
    """
    res = arm64_env.run_aarch64(probe, arm_env=arm, timeout=600)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["machine"] == "aarch64"
    assert not info["torch_findable"]
    if info["status"] in ("missing edgeseq", "missing edgeseq.runtime"):
        pytest.skip(f"edgeseq.runtime does not exist yet ({info['status']})")
    assert info["status"] == "ok", f"import edgeseq.runtime on aarch64: {info['status']}"
    assert not info["torch_loaded"], "import edgeseq.runtime imported torch"


def test_streaming_predictor_matches_x86(arm, frames, tmp_path):
    torch = pytest.importorskip("torch")
    try:
        from edgeseq.exporters import export
        from edgeseq.runtime import StreamingPredictor  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name not in ("edgeseq", "edgeseq.exporters", "edgeseq.runtime"):
            raise
        pytest.skip(f"edgeseq exporter/runtime not available yet: {e}")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
            self.head = torch.nn.Linear(16, 4)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    torch.manual_seed(0)
    path = tmp_path / "lstm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(Net(), path, example=torch.randn(1, 5, 8))
    on_arm = arm64_stream.stream_on_aarch64(path, CHUNKS, frames, arm_env=arm)
    on_x86 = arm64_stream.stream_local(path, CHUNKS, frames, site_dirs=arm.site_dirs[:1])
    for c in CHUNKS:
        assert arm64_stream.max_abs_diff(on_x86, on_arm, c) <= TOL, f"chunk {c}"
        first = next(iter(on_arm["chunks"][c]["calls"][0]))
        np.testing.assert_allclose(_joined(on_arm, c, first), _joined(on_arm, 1, first), atol=TOL)
    assert not on_arm["torch_loaded"]


def test_arm64_check_cli(arm, plain_lstm):
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "arm64-check"),
        str(plain_lstm),
        "--raw",
        "--frames",
        "12",
        "--chunks",
        "1,5",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("PASS")


def test_build_once_never_leaves_a_half_built_dir(tmp_path):
    final = tmp_path / "thing"

    def broken(d: Path) -> None:
        (d / "half").write_text("x")
        raise RuntimeError("aborted")

    with pytest.raises(RuntimeError):
        arm64_env._build_once(final, broken)
    assert not final.exists() and not list(tmp_path.glob(".thing.tmp-*"))
    calls = []
    arm64_env._build_once(final, lambda d: calls.append((d / "ok").write_text("1")))
    arm64_env._build_once(final, lambda d: calls.append("rebuilt"))
    assert (final / ".complete").exists() and (final / "ok").exists() and len(calls) == 1


@pytest.fixture(scope="module")
def cell_mode_models(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, object]]:
    """Every cell x export mode, exported on x86 from the same tiny 2-layer model."""
    torch = pytest.importorskip("torch")
    from edgeseq.exporters import MODES
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import CELLS, SeqConfig, SeqModel

    out = tmp_path_factory.mktemp("arm64-matrix")
    models = {}
    for cell in CELLS:
        torch.manual_seed(0)
        model = SeqModel(
            SeqConfig(cell=cell, input_size=8, hidden_size=12, layers=2, output_size=3)
        ).eval()
        for mode in MODES:
            path = out / f"{cell}-{mode}.onnx"
            export_model(model, path, mode=mode)
            models[cell, mode] = (path, model)
    return models


def test_every_cell_and_mode_streams_on_aarch64_like_x86(arm, frames, cell_mode_models):
    """Issue 7: each cell in native and unrolled mode, streamed in chunks on aarch64 through
    edgeseq.runtime, matches x86 (and PyTorch) within 1e-5, without torch on the device."""
    torch = pytest.importorskip("torch")
    from edgeseq.exporters import MODES

    assert {"native", "unrolled"} <= set(MODES), f"modes registered: {sorted(MODES)}"
    failures = []
    for (cell, mode), (path, model) in sorted(cell_mode_models.items()):
        on_arm = arm64_stream.stream_on_aarch64(path, CHUNKS, frames, arm_env=arm)
        on_x86 = arm64_stream.stream_local(path, CHUNKS, frames, site_dirs=arm.site_dirs[:1])
        assert not on_arm["torch_loaded"], f"{cell}/{mode}: torch imported on aarch64"
        with torch.no_grad():
            ref = model(torch.from_numpy(frames)[None])[0][0].numpy()  # (N, out)
        for c in CHUNKS:
            diff = arm64_stream.max_abs_diff(on_x86, on_arm, c)
            name = next(iter(on_arm["chunks"][c]["calls"][0]))  # the single output
            vs_torch = float(np.abs(_joined(on_arm, c, name) - ref).max())
            print(
                f"{cell:4s} {mode:8s} chunk {c}: aarch64 vs x86 {diff:.1e}, "
                f"vs PyTorch {vs_torch:.1e}"
            )
            if not (diff <= TOL and vs_torch <= TOL):
                failures.append((cell, mode, c, diff, vs_torch))
    assert not failures, failures
