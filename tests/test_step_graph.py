"""Fixed-chunk graphs stream frame by frame at frame cost: the one-step graph beside them.

Also the chunk-1 export (its output spec) and native graphs without a lengths input in
StreamingPredictor and StreamPool.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from test_export_support import Net, torch_whole

from edgeseq.errors import ContractError, InputError
from edgeseq.exporters import export, quantize
from edgeseq.exporters._onnx import op_histogram
from edgeseq.runtime import StreamingPredictor, StreamPool
from edgeseq.runtime._steps import plan_calls

CHUNK = 8
X = torch.randn(2, 6, 3)


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def unrolled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """LSTM unrolled at chunk 8, with and without a lengths input (both with a step graph)."""
    root = tmp_path_factory.mktemp("step")
    torch.manual_seed(0)
    model = Net("lstm", layers=2).eval()
    out = {}
    for name, lengths in (("lengths", True), ("no-lengths", False)):
        path = root / name / "u.onnx"
        export(model, path, example=X, mode="unrolled", chunk=CHUNK, lengths=lengths)
        out[name] = (model, path)
    return out


def _calls(pred: StreamingPredictor) -> list[int]:
    """Record the frames of every graph call the predictor makes (into the returned list)."""
    seen: list[int] = []
    call = pred._slot.call

    def spy(xs, valid):
        seen.append(xs.shape[1])
        return call(xs, valid)

    pred._slot.call = spy  # type: ignore[method-assign]
    pred._fast = False  # count single frames too
    return seen


@pytest.mark.parametrize(
    ("total", "frames", "step", "pad", "want"),
    [
        (1, 8, True, True, [(0, 1, True)]),
        (11, 8, True, True, [(0, 8, False), (8, 1, True), (9, 1, True), (10, 1, True)]),
        (13, 8, True, True, [(0, 8, False), (8, 5, False)]),  # 5 > 8 / 2: one padded chunk
        (13, 8, True, False, [(0, 8, False)] + [(8 + i, 1, True) for i in range(5)]),
        (13, 8, False, True, [(0, 8, False), (8, 5, False)]),
        (16, 8, False, False, [(0, 8, False), (8, 8, False)]),
        (5, None, False, False, [(0, 5, False)]),
    ],
)
def test_plan_calls(total, frames, step, pad, want) -> None:
    assert plan_calls(total, frames, step, pad) == want


def test_plan_calls_refusals() -> None:
    with pytest.raises(InputError, match="exactly 8 new frames per call"):
        plan_calls(13, 8, False, False)
    with pytest.raises(InputError, match="offline graph"):
        plan_calls(9, 8, True, True, offline=True)


@pytest.mark.parametrize("name", ["lengths", "no-lengths"])
def test_short_calls_run_the_step_graph_and_match_pytorch(unrolled, name: str) -> None:
    model, path = unrolled[name]
    step = path.with_name("u.step.onnx")
    assert step.is_file()
    assert not {"LSTM", "GRU", "RNN", "Loop", "Scan"} & set(op_histogram(onnx.load(str(step))))
    pred = StreamingPredictor(path)
    assert pred.engine.step is not None and pred.engine.step.contract.model.chunk == 1
    assert pred._fast  # single frames take the pre-bound path, through the step graph
    x = _frames(29)
    want = torch_whole(model, x)
    for k in (1, 2, 3, 5, 7, 8, 9, 29):
        pred.reset()
        got = np.concatenate([pred.step(x[i : i + k]) for i in range(0, len(x), k)])
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    pred.reset()
    calls = _calls(pred)
    pred.step(x[:11])
    assert calls == [8, 1, 1, 1]  # a chunk, then the 3 left one frame each
    calls.clear()
    pred.step(x[:13])
    assert calls == ([8, 8] if name == "lengths" else [8, 1, 1, 1, 1, 1])
    calls.clear()
    pred.step(x[0])
    assert calls == [1]


def test_pool_runs_the_step_graph_for_ragged_rows(unrolled) -> None:
    _, path = unrolled["lengths"]
    pool = StreamPool(path, max_streams=4)
    solo = {i: StreamingPredictor(path) for i in (pool.open(), pool.open(), pool.open())}
    rng = np.random.default_rng(3)
    for _ in range(6):
        req = {i: _frames(int(rng.integers(1, 12)), int(rng.integers(99))) for i in solo}
        out = pool.step(req)
        for i, f in req.items():
            np.testing.assert_allclose(out[i], solo[i].step(f), atol=1e-6, rtol=0)


def test_without_the_step_file_short_calls_are_padded(unrolled, tmp_path: Path) -> None:
    model, path = unrolled["lengths"]
    alone = tmp_path / "u.onnx"
    shutil.copy(path, alone)  # the step graph left behind
    pred = StreamingPredictor(alone)
    assert pred.engine.step is None
    x = _frames(11)
    np.testing.assert_allclose(pred.step(x), torch_whole(model, x), atol=1e-5, rtol=0)
    assert StreamingPredictor(path.read_bytes()).engine.step is None  # bytes: no folder
    _, no_len = unrolled["no-lengths"]
    shutil.copy(no_len, tmp_path / "n.onnx")
    with pytest.raises(InputError, match="multiple of 8"):
        StreamingPredictor(tmp_path / "n.onnx").step(x)


def test_a_step_graph_of_other_weights_is_refused(unrolled, tmp_path: Path) -> None:
    _, path = unrolled["lengths"]
    shutil.copy(path, tmp_path / "u.onnx")
    torch.manual_seed(1)  # same shapes, other weights: a stale step file
    export(Net("lstm", layers=2).eval(), tmp_path / "other.onnx", example=X, mode="unrolled",
           chunk=CHUNK, lengths=True)  # fmt: skip
    shutil.copy(tmp_path / "other.step.onnx", tmp_path / "u.step.onnx")
    with pytest.raises(ContractError, match=r"u\.step\.onnx does not belong.*weights digest"):
        StreamingPredictor(tmp_path / "u.onnx")


def test_quantized_copy_brings_its_own_step_graph(unrolled, tmp_path: Path) -> None:
    model, path = unrolled["lengths"]
    dst = tmp_path / "u.int8.onnx"
    quantize(path, dst, "int8")
    pred = StreamingPredictor(dst)
    assert pred.contract.model.extra["step_model"]["file"] == "u.int8.step.onnx"
    assert pred.engine.step is not None
    assert pred.engine.step.contract.model.extra["quantization"]["kind"] == "int8"
    x = _frames(11)
    got = np.stack([pred.step(f) for f in x])
    np.testing.assert_allclose(got, torch_whole(model, x), atol=0.05, rtol=0)


def test_one_frame_costs_a_frame_not_a_chunk(unrolled) -> None:
    """Per-frame streaming through the step graph vs the same file padding every frame to
    its chunk of 8: interleaved rounds, best of each (measured ~6x apart; asserted 2x)."""
    _, path = unrolled["lengths"]
    fast, padded = StreamingPredictor(path, threads=1), StreamingPredictor(path, threads=1)
    padded.engine.step = None
    padded._fast = False
    x = _frames(200)
    best = {"fast": np.inf, "padded": np.inf}
    for _ in range(5):
        for name, p in (("fast", fast), ("padded", padded)):
            t0 = time.perf_counter()
            for f in x:
                p.step(f)
            best[name] = min(best[name], time.perf_counter() - t0)
    assert best["fast"] * 2 < best["padded"], best


# ---------------------------------------------------------------- chunk 1 and no lengths
@pytest.mark.parametrize("lengths", [True, False])
def test_chunk_1_unrolled_has_a_time_axis(lengths: bool, tmp_path: Path) -> None:
    """The axis probe adds frames whatever the example's length: a one-frame graph's
    output keeps its time axis, and step(frame) returns [out], not [1, out]."""
    torch.manual_seed(0)
    model = Net("gru").eval()
    path = tmp_path / "u1.onnx"
    c = export(model, path, example=X, mode="unrolled", chunk=1, lengths=lengths)
    y = c.outputs[0]
    assert (y.shape, y.batch_axis, y.time_axis) == (["batch", 1, 2], 0, 1)
    assert "step_model" not in c.model.extra and not path.with_name("u1.step.onnx").exists()
    pred = StreamingPredictor(path)
    x = _frames(7)
    want = torch_whole(model, x)
    assert pred.step(x[0]).shape == (2,)
    np.testing.assert_allclose(pred.step(x[1:]), want[1:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_native_without_lengths_in_predictor_and_pool(cell: str, tmp_path: Path) -> None:
    """No lengths input: the pool makes one call per distinct frame count (equal counts:
    one call), every stream equal to its own predictor."""
    torch.manual_seed(0)
    model = Net(cell, layers=2).eval()
    path = tmp_path / "n.onnx"
    c = export(model, path, example=X)
    assert c.lengths is None
    assert not any(len(n.input) > 4 and n.input[4] for n in onnx.load(str(path)).graph.node
                   if n.op_type in ("LSTM", "GRU", "RNN"))  # fmt: skip
    x = _frames(17)
    pred = StreamingPredictor(path)
    np.testing.assert_allclose(
        np.concatenate([pred.step(x[i : i + 3]) for i in range(0, 17, 3)]),
        torch_whole(model, x),
        atol=1e-5,
        rtol=0,
    )
    pool = StreamPool(path, max_streams=4)
    ids = [pool.open() for _ in range(4)]
    solo = {i: StreamingPredictor(path) for i in ids}
    calls: list[int] = []
    run = pool.engine.run

    def counting(xs, lengths, slot):
        calls.append(xs.shape[0])
        return run(xs, lengths, slot)

    pool.engine.run = counting  # type: ignore[method-assign]
    for counts in ([1, 1, 1, 1], [2, 5, 2, 1], [3, 3, 3, 3]):
        calls.clear()
        req = {i: _frames(n, s) for s, (i, n) in enumerate(zip(ids, counts))}
        out = pool.step(req)
        assert sorted(calls) == sorted(counts.count(n) for n in dict.fromkeys(counts))
        for i, f in req.items():
            np.testing.assert_allclose(out[i], solo[i].step(f), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="lengths input"):
        StreamPool(path, max_streams=2, resident=True)


def test_ort_format_files_pair_with_their_ort_step_graph(unrolled, tmp_path: Path) -> None:
    """`export --ort` converts both graphs; a minimal build reads .ort only, so the .ort
    model pairs with the .ort step graph beside it."""
    from edgeseq.exporters import to_ort

    model, path = unrolled["lengths"]
    main_ort = to_ort(path, tmp_path).ort
    step_ort = to_ort(path.with_name("u.step.onnx"), tmp_path).ort
    pred = StreamingPredictor(main_ort)
    assert pred.engine.step is not None
    assert pred.engine.step.session._model_path == str(step_ort)
    x = _frames(5)
    np.testing.assert_allclose(
        np.stack([pred.step(f) for f in x]), torch_whole(model, x), atol=1e-5, rtol=0
    )
