"""The same file on every ONNX runtime: cell × export variant × runtime, streamed in chunks.

Each case exports a tiny model, then :func:`verify` streams it in chunkings {1, 3, 7} at
batch 1 and batch 3 (rows of different lengths when the graph takes ``lengths``) on one
runtime, driven through that runtime's own API with the state fed back, and compares
with PyTorch on the whole sequence (≤ 1e-5). Where a runtime cannot run a variant the
refusal is asserted, and a second test proves the refusal is needed: run anyway, the
runtime is wrong (so a runtime release that fixes it fails that test, and the refusal
can go).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_export_support import Net

from edgeseq.cli import main
from edgeseq.errors import InputError, ProviderError
from edgeseq.exporters import MODES, RUNTIMES, export, verify
from edgeseq.exporters import _runtimes as rt
from edgeseq.exporters._runtimes import open_runtime
from edgeseq.runtime._session import open_session
from edgeseq.train.checkpoint import save_checkpoint
from edgeseq.train.models import CELLS, SeqConfig, SeqModel

CHUNKINGS = (1, 3, 7)
TOL = 1e-5


@dataclass(frozen=True)
class Variant:
    name: str
    mode: str
    lengths: bool | None  # None: the mode's default


VARIANTS = (
    Variant("native", "native", True),  # sequence_lens fed from the lengths input
    Variant("native-no-lengths", "native", False),  # the native default
    Variant("unrolled", "unrolled", None),  # basic ops, a lengths mask, chunk 4 + step graph
)

# (variant, runtime) -> what the runtime cannot do; every other pair must match PyTorch
REFUSED: dict[tuple[str, str], str] = {
    ("native", "tract"): "Non constant seq_len is not supported",  # at load
    ("native", "openvino"): "final state ignores sequence_lens",  # calls with partial rows
    ("native", "reference"): "final state ignores sequence_lens",
}


def _install_hint(runtime: str) -> None:
    try:
        rt.require_runtime(runtime)
    except ProviderError as exc:  # a machine without the runtimes extra; CI installs it
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple]:
    root = tmp_path_factory.mktemp("runtimes")
    out = {}
    for cell in CELLS:
        torch.manual_seed(0)
        model = Net(cell, layers=2).eval()
        for v in VARIANTS:
            path = root / f"{cell}-{v.name}.onnx"
            chunk = 4 if MODES[v.mode].fixed_chunk else None
            c = export(model, path, example=torch.randn(2, 6, 3), mode=v.mode, chunk=chunk,
                       lengths=v.lengths)  # fmt: skip
            assert (c.lengths is not None) == (v.name != "native-no-lengths")
            out[(cell, v.name)] = (model, path)
    return out


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize("variant", [v.name for v in VARIANTS])
@pytest.mark.parametrize("cell", CELLS)
def test_matrix(exported, cell: str, variant: str, runtime: str) -> None:
    _install_hint(runtime)
    model, path = exported[(cell, variant)]
    report = verify(model, path, runtime=runtime, chunkings=CHUNKINGS)
    assert report.runtime == runtime
    refusal = REFUSED.get((variant, runtime))
    if refusal is None:
        assert report.ok(atol=TOL), report.table(per_case=True)
        cases = {d.case for d in report.diffs if ":" not in d.name}  # the main graph's
        assert len(cases) == len(CHUNKINGS) * 2, cases
        if variant == "unrolled":  # the one-step graph is verified on the runtime too
            assert any(d.name.startswith(f"{path.stem}.step.onnx: ") for d in report.diffs)
        return
    assert report.errors and all(refusal in e or "seq_len" in e for e in report.errors)
    if runtime == "tract":  # refused at load, with the remedy
        assert report.errors == [e for e in report.errors if "--no-lengths" in e]
        assert not report.diffs
        return
    # only calls where a row has some but not all frames are refused; the rest match
    assert all("batch 3" in e for e in report.errors), report.errors
    assert report.diffs and all(d.ok(TOL) for d in report.diffs), report.table(per_case=True)
    assert {d.case for d in report.diffs} >= {
        f"batch 1, chunks of {k} (11 frames)" for k in (1, 3, 7)
    }


@pytest.mark.parametrize("runtime", ["openvino", "reference"])
def test_refused_calls_would_be_wrong(exported, runtime: str) -> None:
    """Without the guard, a row with 2 of 5 frames gets the wrong final state (every cell)."""
    _install_hint(runtime)
    for cell in CELLS:
        _, path = exported[(cell, "native")]
        graph = rt._Graph.read(path)
        runner = open_runtime(runtime, path)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 5, 3)).astype(np.float32)  # (batch, time, F)
        if graph.contract.frames.batch_axis == 1:  # the graph takes frames time-major
            x = np.ascontiguousarray(x.swapaxes(0, 1))
        feed = {"x": x, "lengths": np.array([5, 2], np.int32)}
        for p in graph.contract.states:  # (layers, batch 2, hidden), or one layer's part
            shape = [2 if isinstance(d, str) else d for d in p.shape]
            feed[p.input] = rng.standard_normal(shape).astype(np.float32)
        names = graph.contract.state_outputs
        with pytest.raises(InputError, match=r"ignores sequence_lens.*--no-lengths"):
            runner.run(names, feed)
        runner.graph = dataclasses.replace(graph, fed_sequence_lens=None)  # type: ignore[attr-defined]
        got = runner.run(names, feed)  # the guard dropped
        want = open_session(path).run(names, feed)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g[:, 0], w[:, 0], atol=TOL)  # the full row is right
            assert np.abs(g[:, 1] - w[:, 1]).max() > 1e-2  # the short row is not


def test_tract_refuses_a_fed_sequence_lens(exported) -> None:
    _install_hint("tract")
    import tract

    _, path = exported[("gru", "native")]
    with pytest.raises(Exception, match="Non constant seq_len"):
        tract.onnx().load(str(path)).into_model()


def test_every_runtime_and_mode_has_cases() -> None:
    assert {v.mode for v in VARIANTS} == set(MODES)
    assert set(RUNTIMES) == {"onnxruntime", "openvino", "tract", "reference"}
    from edgeseq.cli._verify import RUNTIME_NAMES

    assert tuple(RUNTIMES) == RUNTIME_NAMES  # the CLI's choices (kept torch-free)


def test_cli_verify_and_export_verify_on_every_runtime(tmp_path) -> None:
    for runtime in RUNTIMES:
        _install_hint(runtime)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", SeqModel(SeqConfig(cell="gru", input_size=3)))
    runtimes = [a for r in RUNTIMES for a in ("--runtime", r)]
    res = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(tmp_path / "m.onnx"),
                                    "--verify", *runtimes])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["verify", str(ckpt), str(tmp_path / "m.onnx"), *runtimes])
    assert res.exit_code == 0, res.output
    for r in RUNTIMES:
        assert f"runtime {r})" in res.output
    assert res.output.count("PASS") == len(RUNTIMES)
    bad = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(tmp_path / "l.onnx"),
                                    "--lengths", "--verify", "--runtime", "tract"])  # fmt: skip
    assert bad.exit_code == 1
    last = bad.output.strip().splitlines()[-1]
    assert last.startswith("Error: verification failed on tract") and "--no-lengths" in last


def test_missing_runtime_says_which_extra(monkeypatch, tmp_path) -> None:
    real = __import__("importlib").import_module

    def fake(name, *a, **k):
        if name == "tract":
            raise ImportError("No module named 'tract'")
        return real(name, *a, **k)

    monkeypatch.setattr("importlib.import_module", fake)
    with pytest.raises(ProviderError, match=r"pip install 'edgeseq\[runtimes\]'"):
        rt.require_runtime("tract")
    res = CliRunner().invoke(main, ["verify", "x.pt", "m.onnx", "--runtime", "tract"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "Error: runtime 'tract' needs the 'tract' package, which is not installed: "
        "pip install 'edgeseq[runtimes]'"
    ]
    with pytest.raises(ProviderError, match="one of"):
        rt.require_runtime("tensorflow")
