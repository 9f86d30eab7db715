"""StreamPool: one batched call for many streams equals separate predictors (ragged frame
counts included), capacity, idle eviction, and the micro-batching submit front."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _models import VAD_CONTEXT, zoo

from edgeseq.errors import InputError, StreamError
from edgeseq.runtime import StreamingPredictor, StreamPool

# ORT's LSTM and GRU kernels give every batch row the same bits as a batch of one; its
# simple-RNN kernel differs in the last float32 bit (~1 ulp), so RNN gets a tolerance
TOL = {"lstm": 0.0, "gru": 0.0, "rnn": 1e-6}


def _frames(rng: np.random.Generator, n: int, f: int = 3) -> np.ndarray:
    """One frame [F] when n == 0, else a chunk [n, F]."""
    shape = (f,) if n == 0 else (n, f)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_pool_equals_separate_predictors_ragged(cell: str) -> None:
    path = zoo.get(cell)
    rng = np.random.default_rng(1)
    pool = StreamPool(path, max_streams=8)
    ids = [pool.open() for _ in range(6)]
    solo = {i: StreamingPredictor(path) for i in ids}
    for _ in range(12):
        chosen = [i for i in ids if rng.random() < 0.8] or ids[:1]
        req = {i: _frames(rng, int(rng.integers(0, 6))) for i in chosen}  # 1 frame .. 5 frames
        out = pool.step(req)
        assert list(out) == chosen
        for i in chosen:
            ref = solo[i].step(req[i])
            assert out[i].shape == ref.shape
            np.testing.assert_allclose(out[i], ref, rtol=0, atol=TOL[cell])
    for i in ids:  # snapshots hold the graph's state pairs (a state may travel in parts)
        want = solo[i].snapshot().states
        for k, v in pool.snapshot(i).states.items():
            np.testing.assert_allclose(v, want[k], rtol=0, atol=TOL[cell])


def test_pool_of_fixed_chunk_graph_equals_separate_predictors() -> None:
    """Unrolled graphs take 4 frames per call: rows that end early ride along masked."""
    path = zoo.get("unrolled")
    rng = np.random.default_rng(4)
    pool = StreamPool(path, max_streams=4)
    ids = [pool.open() for _ in range(4)]
    solo = {i: StreamingPredictor(path) for i in ids}
    assert pool.contract.model.chunk == 4
    for _ in range(6):
        req = {i: _frames(rng, int(rng.integers(0, 10))) for i in ids}  # 1..9 frames
        out = pool.step(req)
        for i in ids:
            np.testing.assert_allclose(out[i], solo[i].step(req[i]), rtol=0, atol=1e-6)


def test_pool_of_model_without_lengths_groups_by_frame_count() -> None:
    """The VAD-like model has no lengths input: one call per distinct frame count."""
    path = zoo.get("vad")
    kw = {"state": {"state": "stateN"}, "constants": {"sr": np.array(16000)}}
    pool = StreamPool(path, max_streams=4, context=VAD_CONTEXT, **kw)
    ids = [pool.open() for _ in range(4)]
    solo = {i: StreamingPredictor(path, context=VAD_CONTEXT, **kw) for i in ids}
    rng = np.random.default_rng(2)
    for _ in range(5):
        req = {i: rng.standard_normal(int(rng.choice([8, 8, 13]))).astype(np.float32) for i in ids}
        out = pool.step(req)
        for i in ids:
            np.testing.assert_array_equal(out[i], solo[i].step(req[i]))


def test_capacity_close_reset_and_ids() -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=2)
    a, b = pool.open(), pool.open()
    with pytest.raises(StreamError, match="full") as info:
        pool.open()
    assert "max_streams=2" in str(info.value) and "close()" in str(info.value)
    x = np.ones((3, 3), np.float32)
    first = pool.step({a: x})[a]
    pool.close(a)
    with pytest.raises(StreamError, match="closed"):
        pool.step({a: x})
    c = pool.open()  # the freed row is reused, from the initial state
    np.testing.assert_array_equal(pool.step({c: x})[c], first)
    pool.step({c: x})
    pool.reset(c)
    np.testing.assert_array_equal(pool.step({c: x})[c], first)
    assert sorted(pool.ids) == sorted([b, c]) and len(pool) == 2 and a not in pool
    with pytest.raises(StreamError, match="unknown stream id 99"):
        pool.reset(99)


def test_idle_eviction_uses_the_injected_clock() -> None:
    now = [100.0]
    pool = StreamPool(zoo.get("gru"), max_streams=2, idle_timeout=30, clock=lambda: now[0])
    a, b = pool.open(), pool.open()
    now[0] += 20
    pool.step({a: np.zeros(3, np.float32)})
    now[0] += 15  # b idle 35 s, a 15 s
    assert pool.evict_idle() == [b]
    with pytest.raises(StreamError, match="evicted after 35 s idle"):
        pool.step({b: np.zeros(3, np.float32)})
    now[0] += 31
    c = pool.open()  # the sweep on open evicts a, making room
    assert pool.ids == [c]


def test_submit_from_threads_and_micro_batches() -> None:
    path = zoo.get("lstm")
    calls: list[int] = []  # streams per batched run
    pool = StreamPool(
        path, max_streams=16, max_batch=8, max_wait_ms=20, on_batch=lambda s, f: calls.append(s)
    )
    ids = [pool.open() for _ in range(8)]
    solo = {i: StreamingPredictor(path) for i in ids}
    frames = {i: np.full(3, i, np.float32) for i in ids}
    barrier = threading.Barrier(8)
    futures = {}

    def worker(i: int) -> None:
        barrier.wait()
        futures[i] = pool.submit(i, frames[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in ids:
        np.testing.assert_array_equal(futures[i].result(timeout=5), solo[i].step(frames[i]))
    assert sum(calls) == 8 and max(calls) > 1, calls  # batched, not one call per request
    pool.close()


def test_submit_keeps_each_streams_order_and_resolves_errors() -> None:
    path = zoo.get("gru")
    with StreamPool(path, max_streams=4, max_batch=4, max_wait_ms=1) as pool:
        a = pool.open()
        xs = np.random.default_rng(3).standard_normal((10, 3)).astype(np.float32)
        futs = [pool.submit(a, x) for x in xs]  # same stream: ten batches, in order
        ref = StreamingPredictor(path).step(xs)
        np.testing.assert_array_equal(np.stack([f.result(timeout=5) for f in futs]), ref)
        with pytest.raises(InputError, match="stream"):
            pool.submit(a, np.zeros(5, np.float32))  # bad frames raise at once
        with pytest.raises(StreamError):
            pool.submit(12345, xs[0])
        b = pool.open()
        fut = pool.submit(b, xs[0])
        pool.close(b)  # closed before (or after) its batch ran: resolved either way
        try:
            fut.result(timeout=5)
        except StreamError as exc:
            assert "closed" in str(exc)
    with pytest.raises(StreamError, match="closed"):
        pool.submit(a, xs[0])
    with pytest.raises(StreamError, match="closed"):
        pool.step({a: xs[0]})


def test_shutdown_drains_pending_requests() -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=2, max_batch=2, max_wait_ms=200)
    a = pool.open()
    t0 = time.monotonic()
    fut = pool.submit(a, np.zeros(3, np.float32))
    pool.close()  # does not wait the 200 ms batching window, and does not drop the request
    assert fut.result(timeout=5).shape == (2,)
    assert time.monotonic() - t0 < 5


def test_bad_pool_arguments() -> None:
    path = zoo.get("gru")
    for kw in ({"max_streams": 0}, {"max_batch": 0}, {"idle_timeout": -1}):
        with pytest.raises(InputError):
            StreamPool(path, **kw)
    pool = StreamPool(path, max_streams=2)
    with pytest.raises(InputError, match="dict"):
        pool.step([np.zeros(3)])  # type: ignore[arg-type]
    assert pool.step({}) == {}
    assert "StreamPool(streams=0/2" in repr(pool)


def test_frames_of_every_kind_share_a_call(tmp_path: Path) -> None:
    """Single frames and chunks of different lengths in one step give their own shapes."""
    pool = StreamPool(zoo.get("lstm"), max_streams=3)
    a, b, c = (pool.open() for _ in range(3))
    out = pool.step({a: np.zeros(3), b: np.zeros((4, 3)), c: [[1, 2, 3]]})
    assert out[a].shape == (2,) and out[b].shape == (4, 2) and out[c].shape == (1, 2)


@pytest.mark.parametrize("mode", ["native", "unrolled"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_resident_table_equals_separate_predictors(cell: str, mode: str, tmp_path: Path) -> None:
    """The device-resident pool (the GPU default) runs every row each call; rows that are
    not stepped get zero frames and must keep their state exactly."""
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    model = SeqModel(SeqConfig(cell=cell, input_size=3, hidden_size=8, layers=2, output_size=2))
    path = tmp_path / "m.onnx"
    # resident rows need a lengths input (zero frames for the rows not stepped)
    export_model(model, path, mode=mode, chunk=4 if mode == "unrolled" else None, lengths=True)
    pool = StreamPool(path, max_streams=6, resident=True)
    assert pool._rows.resident and not StreamPool(path, max_streams=2)._rows.resident  # CPU
    rng = np.random.default_rng(1)
    ids = [pool.open() for _ in range(4)]
    solo = {i: StreamingPredictor(path) for i in ids}
    tol = 1e-6 if cell == "rnn" else 0.0  # onnxruntime's RNN kernel varies with batch size
    for _ in range(8):
        req = {i: _frames(rng, int(rng.integers(1, 7))) for i in ids if rng.random() < 0.6}
        if not req:
            continue
        out = pool.step(req)
        for i, f in req.items():
            assert np.abs(out[i] - solo[i].step(f)).max() <= tol
    # a refused step changes nothing; snapshots and resets go through the device table
    a, b = ids[0], ids[1]
    snap = pool.snapshot(a)
    with pytest.raises(InputError):
        pool.step({a: _frames(rng, 2), b: np.full((2, 3), np.nan, np.float32)})
    f = _frames(rng, 3)
    expected = solo[a].step(f)
    assert np.abs(pool.step({a: f})[a] - expected).max() <= tol
    pool.restore(a, snap)
    solo[a].reset()
    pool.reset(b)
    solo[b].reset()
    g = _frames(rng, 2)
    assert np.abs(pool.step({b: g})[b] - solo[b].step(g)).max() <= tol


@pytest.mark.filterwarnings("ignore::edgeseq.runtime.DiscoveryWarning")
def test_resident_refused_for_models_that_cannot_keep_idle_rows() -> None:
    with pytest.raises(InputError, match="resident=True"):
        StreamPool(
            zoo.get("vad_plain"),
            max_streams=2,
            resident=True,
            constants={"sr": np.array(16000)},
            context=VAD_CONTEXT,
        )
