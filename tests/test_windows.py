"""Fixed windows: any number of samples in, one output per complete window out.

The Silero-VAD-like zoo model (raw samples, conv of kernel 5, state (2, batch, 16)) runs
with window=8 and context=4; the reference is a plain onnxruntime loop over windows.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from _models import VAD_CONTEXT, zoo

from edgeseq.errors import InputError, SnapshotError
from edgeseq.runtime import Snapshot, StreamingPredictor, StreamPool

SR = {"sr": np.array(16000, np.int64)}
W = 8
KW = {"state": {"state": "stateN"}, "constants": SR, "context": VAD_CONTEXT, "window": W}
X = np.random.default_rng(3).standard_normal(100).astype(np.float32)


def _reference(x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(zoo.get("vad")), providers=["CPUExecutionProvider"])
    state, ctx, out = np.zeros((2, 1, 16), np.float32), np.zeros(VAD_CONTEXT, np.float32), []
    for i in range(0, len(x) - W + 1, W):
        win = np.concatenate([ctx, x[i : i + W]])
        prob, state = sess.run(None, {"input": win[None], "state": state, **SR})
        out.append(prob[0])
        ctx = win[-VAD_CONTEXT:]
    return np.array(out)


@pytest.mark.parametrize("cuts", [[100], [3, 5, 1, 30, 61], [1] * 100, [8] * 12 + [4]])
def test_any_chunking_gives_one_output_per_window(cuts: list[int]) -> None:
    p = StreamingPredictor(zoo.get("vad"), **KW)
    outs, start = [], 0
    for n in cuts:
        y = p.step(X[start : start + n] if n > 1 else X[start])
        assert y.ndim == 2 and y.shape[1] == 1  # [k, 1], k may be 0
        outs.append(y)
        start += n
    assert p.pending == 100 % W
    np.testing.assert_allclose(np.concatenate(outs), _reference(X), rtol=0, atol=1e-6)


def test_short_call_returns_an_empty_result_and_keeps_the_samples() -> None:
    p = StreamingPredictor(zoo.get("vad"), **KW)
    assert p.step(X[:3]).shape == (0, 1) and p.pending == 3
    assert p.step(X[3:8]).shape == (1, 1) and p.pending == 0


def test_without_buffering_a_wrong_size_is_refused_and_nothing_changes() -> None:
    p = StreamingPredictor(zoo.get("vad"), buffer=False, **KW)
    p.step(X[:16])
    before = p.state["state"].copy()
    with pytest.raises(InputError, match=r"'input': expected whole windows of 8 .* got 5"):
        p.step(X[16:21])
    np.testing.assert_array_equal(p.state["state"], before)
    assert p.pending == 0
    np.testing.assert_allclose(p.step(X[16:96]), _reference(X[:96])[2:], rtol=0, atol=1e-6)


def test_pending_samples_travel_with_the_snapshot() -> None:
    a = StreamingPredictor(zoo.get("vad"), **KW)
    a.step(X[:21])
    snap = Snapshot.from_bytes(a.snapshot().to_bytes())
    assert snap.pending is not None and len(snap.pending) == 5
    b = StreamingPredictor(zoo.get("vad"), **KW)
    b.restore(snap)
    np.testing.assert_array_equal(a.step(X[21:60]), b.step(X[21:60]))
    plain = StreamingPredictor(zoo.get("vad"), **{**KW, "window": None})
    with pytest.raises(SnapshotError, match="window"):
        plain.restore(snap)


def test_pool_windows_per_stream_match_the_predictor() -> None:
    pool = StreamPool(zoo.get("vad"), max_streams=2, **KW)
    a, b = pool.open(), pool.open()
    got = {a: [], b: []}
    for s, e in [(0, 3), (3, 20), (20, 21), (21, 77), (77, 100)]:
        out = pool.step({a: X[s:e], b: 2 * X[s:e]})
        for sid in (a, b):
            got[sid].append(out[sid])
    np.testing.assert_allclose(np.concatenate(got[a]), _reference(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(got[b]), _reference(2 * X), rtol=0, atol=1e-6)
    snap = pool.snapshot(a)
    assert len(snap.pending) == 100 % W


def test_bad_window_settings_and_constants_are_refused() -> None:
    path = zoo.get("vad")
    with pytest.raises(InputError, match="window must be a positive int"):
        StreamingPredictor(path, **{**KW, "window": 0})
    with pytest.raises(InputError, match=r"constants\['sr'\]: expected int64.*got float64"):
        StreamingPredictor(path, **{**KW, "constants": {"sr": 16000.5}})
