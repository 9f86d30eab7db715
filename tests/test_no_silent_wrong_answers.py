"""No silent wrong answers (issue 10 §1): submit owns its frames, values are checked as the
model receives them, a shared predictor loses no step, a stream's calls apply in call
order across step and submit, and stream ids match exactly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _models import zoo

from edgeseq.errors import InputError, SnapshotError, StreamError
from edgeseq.runtime import Snapshot, StreamingPredictor, StreamPool

RNG = np.random.default_rng(7)
XS = RNG.standard_normal((40, 3)).astype(np.float32)


def _states_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ---------------------------------------------------------------- submit owns its input
@pytest.mark.parametrize("model", ["lstm", "scaled"])
@pytest.mark.parametrize("shape", [(3,), (4, 3)])
def test_submit_owns_its_frames_once_it_returns(model: str, shape: tuple[int, ...]) -> None:
    """The audio-loop pattern: one buffer, refilled after every submit. A long batching
    window makes sure every request is still queued when the buffer changes."""
    path = zoo.get(model)
    ref = StreamingPredictor(path)
    n = 6
    frames = RNG.standard_normal((n, *shape)).astype(np.float32)
    with StreamPool(path, max_streams=4, max_batch=4, max_wait_ms=300) as pool:
        a, _ = pool.open(), pool.open()  # two open streams: a lone request waits the window
        buf = np.empty(shape, np.float32)
        futs = []
        for f in frames:
            buf[...] = f
            futs.append(pool.submit(a, buf))
        buf[...] = np.nan  # written after the check: must not reach the model
        got = [fut.result(timeout=10) for fut in futs]
    for f, y in zip(frames, got):
        np.testing.assert_array_equal(y, ref.step(f))


# ---------------------------------------------------------------- checked as received
BIG = np.array([1.0, 1e39, 0.5])  # finite in float64, inf in float32


def _fronts(path: Path, **kw):
    """Each front a stream is fed through, with a way to read its state back."""

    def predictor(frames):
        p = StreamingPredictor(path, **kw)
        p.step(XS[:3])
        before = p.state
        return lambda: p.step(frames), lambda: p.state, before

    def pool_step(frames):
        pool = StreamPool(path, max_streams=2, **kw)
        a = pool.open()
        pool.step({a: XS[:3]})
        before = pool.snapshot(a).states
        return lambda: pool.step({a: frames}), lambda: pool.snapshot(a).states, before

    def pool_submit(frames):
        pool = StreamPool(path, max_streams=2, max_wait_ms=0, **kw)
        a = pool.open()
        pool.step({a: XS[:3]})
        before = pool.snapshot(a).states
        return lambda: pool.submit(a, frames).result(5), lambda: pool.snapshot(a).states, before

    return {"predictor": predictor, "pool.step": pool_step, "pool.submit": pool_submit}


def _small_std() -> dict:
    """The scaled model with std 0.5: a finite float32 3e38 scales to inf."""
    from dataclasses import replace

    c = StreamingPredictor(zoo.get("scaled")).contract
    return {"contract": replace(c, preprocessing=replace(c.preprocessing, std=[0.5] * 3))}


# the per-frame fast path scales without np.errstate (it costs ~1 us a frame): numpy warns
# of the overflow just before the full check refuses the frame
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("front", ["predictor", "pool.step", "pool.submit"])
@pytest.mark.parametrize(
    "case",
    ["float64 frame beyond float32", "float64 chunk beyond float32", "scaling overflows"],
)
def test_values_are_checked_after_the_cast_and_scaling(front: str, case: str) -> None:
    kw: dict = {}
    if case == "scaling overflows":
        path, kw = zoo.get("scaled"), _small_std()
        frames = np.array([3e38, 0.0, 0.0], np.float32)  # the fast path's dtype and shape
    else:
        path = zoo.get("lstm")
        frames = BIG if case.startswith("float64 frame") else np.stack([XS[0], BIG, XS[1]])
    call, state, before = _fronts(path, **kw)[front](frames)
    with pytest.raises(InputError, match="finite") as info:
        call()
    assert "float32" in str(info.value)
    _states_equal(state(), before)  # refused: the state is exactly as it was


def test_broken_preprocessing_is_refused_at_load(tmp_path: Path) -> None:
    import json

    import onnx

    from edgeseq.contract import METADATA_KEY
    from edgeseq.errors import ContractError

    for field, value in (
        ("std", [float("nan")] * 3),
        ("std", [0.0, 1.0, 1.0]),
        ("std", [1e-40] * 3),  # subnormal in float32: 1/std overflows
        ("out_std", [float("inf")]),
        ("mean", [1.0, 2.0]),  # not one per feature
    ):
        proto = onnx.load(str(zoo.get("scaled")))
        for prop in proto.metadata_props:
            if prop.key == METADATA_KEY:
                data = json.loads(prop.value)
                data["preprocessing"][field] = value
                prop.value = json.dumps(data)
        bad = tmp_path / "bad.onnx"
        onnx.save(proto, str(bad))
        with pytest.raises(ContractError, match=f"preprocessing.{field}"):
            StreamingPredictor(bad)


def test_set_state_and_snapshots_are_checked_as_the_model_gets_them() -> None:
    p = StreamingPredictor(zoo.get("lstm"))
    p.step(XS[:3])
    before = p.state
    huge = {k: np.full(v.shape, 1e39) for k, v in before.items()}  # float64, inf in float32
    with pytest.raises(InputError, match="NaN or Inf"):
        p.set_state(huge)
    _states_equal(p.state, before)
    vad = zoo.get("vad")
    kw = {"state": {"state": "stateN"}, "constants": {"sr": np.array(16000)}, "context": 4}
    q = StreamingPredictor(vad, **kw)
    snap = q.snapshot()
    bad = Snapshot(snap.contract_hash, snap.states, 0, np.full(snap.context.shape, 1e39))
    with pytest.raises(SnapshotError, match="NaN or Inf"):
        q.restore(bad)


# ---------------------------------------------------------------- one predictor, many threads
def _slow(fn):
    """``fn`` that keeps the GIL released a while (as a long onnxruntime call does), so
    that threads racing through an unguarded step overlap every time."""

    def slow(*args, **kw):
        out = fn(*args, **kw)
        time.sleep(0.002)
        return out

    return slow


def _counter(path: Path) -> Path:
    """A model whose state counts the frames it was fed: y = s + cumsum(x), s' = s + sum(x).
    After N frames of ones the state is exactly N, and each output names its frame."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 1])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 1])
    s2 = helper.make_tensor_value_info("s_out", TensorProto.FLOAT, ["batch", 1])
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("CumSum", ["x", "axis"], ["c"]),
        helper.make_node("Unsqueeze", ["s", "one"], ["s3"]),
        helper.make_node("Add", ["c", "s3"], ["y"]),
        helper.make_node("ReduceSum", ["x", "one"], ["total"], keepdims=0),
        helper.make_node("Add", ["s", "total"], ["s_out"]),
    ]
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    graph = helper.make_graph(nodes, "counter", [x, s], [y, s2], [one, axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("frames", [1, 3])  # one frame (the fast path) or a chunk
def test_a_predictor_shared_by_threads_loses_no_step(frames: int, tmp_path: Path) -> None:
    """Four threads step one predictor 40 times each: every step is applied once, whole."""
    path = _counter(tmp_path / "counter.onnx")
    frame = np.ones(1 if frames == 1 else (frames, 1), np.float32)
    shared = StreamingPredictor(path, state={"s": "s_out"})
    shared.step(frame)  # builds the fast path's plan
    plan = getattr(shared, "_plan1", None)
    if plan is not None:
        plan.runs[:] = [_slow(r) for r in plan.runs]
    shared._slot.call = _slow(shared._slot.call)  # type: ignore[method-assign]
    outs: list[np.ndarray] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(40):
            outs.append(shared.step(frame))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n = 161 * frames
    assert shared.frames_seen == n
    assert shared.state["s"].item() == n  # no step lost, none applied twice
    last = sorted(int(np.asarray(o).reshape(-1)[-1]) for o in outs)
    assert last == list(range(2 * frames, n + 1, frames))  # each output once, whole


# ---------------------------------------------------------------- call order across fronts
def test_step_after_submit_applies_after_it() -> None:
    path = zoo.get("gru")
    ref = StreamingPredictor(path)
    with StreamPool(path, max_streams=4, max_batch=4, max_wait_ms=200) as pool:
        a, b = pool.open(), pool.open()
        fut = pool.submit(a, XS[0])  # waits up to 200 ms for company
        out = pool.step({a: XS[1], b: XS[2]})  # must not overtake it
        np.testing.assert_array_equal(fut.result(timeout=5), ref.step(XS[0]))
        np.testing.assert_array_equal(out[a], ref.step(XS[1]))
        futs = [pool.submit(a, x) for x in XS[3:6]]
        snap = pool.snapshot(a)  # sees all three
        assert snap.frames_seen == 5
        for fut, x in zip(futs, XS[3:6]):
            np.testing.assert_array_equal(fut.result(timeout=5), ref.step(x))
        _states_equal(snap.states, ref.snapshot().states)  # the graph's pairs, both
        pool.submit(a, XS[6])
        pool.reset(a)  # after the submit, not before
        assert pool.snapshot(a).frames_seen == 0
        pool.submit(a, XS[7])
        pool.submit(b, XS[8])
        assert {s: v.frames_seen for s, v in pool.snapshot_all().streams.items()} == {a: 1, b: 2}
        late = pool.submit(b, XS[9])
        pool.close(b)  # after its submit has run
        assert late.result(timeout=5).shape == (2,) and b not in pool


# ---------------------------------------------------------------- exact ids
@pytest.mark.parametrize("bad", [True, 1.0, "1", np.float32(1)])
def test_stream_ids_must_match_exactly(bad: object) -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=3, max_wait_ms=0)
    ids = [pool.open(), pool.open()]
    assert ids == [0, 1]
    before = pool.snapshot(1).states
    for call in (
        lambda: pool.step({bad: XS[0]}),
        lambda: pool.submit(bad, XS[0]),
        lambda: pool.reset(bad),
        lambda: pool.snapshot(bad),
        lambda: pool.close(bad),
    ):
        with pytest.raises(StreamError, match="ids must match exactly"):
            call()
    assert bad not in pool and len(pool) == 2
    _states_equal(pool.snapshot(1).states, before)
    np_id = np.int64(1)  # a numpy integer is the same integer id
    assert np_id in pool and pool.step({np_id: XS[0]})[np_id].shape == (2,)
