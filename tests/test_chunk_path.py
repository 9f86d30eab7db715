"""The chunk path of one stream (issue 20's per-call cost, issue 10's guarantees kept).

A chunk ``[T, F]`` whose shape recurs is written straight into that shape's bound input,
checked there, run in one call and read back in place, skipping the generic call path.
These tests prove it gives the generic path's answers bit for bit, refuses what the
generic path refuses with the state untouched, leaves long inputs to the pieces of the
call budget, and loses no step when threads share the stream.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from _models import zoo

from edgeseq.errors import InputError
from edgeseq.runtime import StreamingPredictor

RNG = np.random.default_rng(20)
SHAPES = [2, 1, 2, 3, 2, 1, 5, 2, 3, 1, 2]  # frames per call: shapes recur, others do not


def _spy_runs(p: StreamingPredictor) -> list[int]:
    """Count the calls that take the generic path (Engine.run)."""
    calls: list[int] = []
    run = p.engine.run

    def counted(x, lengths, slot):
        calls.append(x.shape[1])
        return run(x, lengths, slot)

    p.engine.run = counted  # type: ignore[method-assign]
    return calls


def _generic(path) -> StreamingPredictor:
    ref = StreamingPredictor(path)
    ref._chunks = False  # the generic path for every chunk: the reference
    return ref


@pytest.fixture(scope="module")
def batch_first(tmp_path_factory) -> tuple:
    """A third-party graph with batch-first frames ``(batch, time, 3)`` and named state."""
    import torch

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = torch.nn.LSTM(3, 5, batch_first=True), torch.nn.Linear(5, 2)

        def forward(self, x, h, c):
            y, (h2, c2) = self.rnn(x, (h, c))
            return self.head(y), h2, c2

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("chunk") / "batch_first.onnx"
    example = (torch.randn(2, 4, 3), torch.zeros(1, 2, 5), torch.zeros(1, 2, 5))
    state_axes = {n: {1: "batch"} for n in ("h", "c", "h_out", "c_out")}
    torch.onnx.export(
        Tagger().eval(),
        example,
        str(path),
        input_names=["x", "h", "c"],
        output_names=["y", "h_out", "c_out"],
        dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}, **state_axes},
        dynamo=False,
    )
    return path, {"state": {"h": "h_out", "c": "c_out"}}


def _chunks(width: int) -> list[np.ndarray]:
    return [RNG.standard_normal((t, width)).astype(np.float32) for t in SHAPES]


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn", "scaled", "batch-first"])
def test_recurring_chunks_give_the_generic_paths_answers(model: str, request) -> None:
    path, kw = (
        request.getfixturevalue("batch_first") if model == "batch-first" else (zoo.get(model), {})
    )
    p, ref, frames = (StreamingPredictor(path, **kw) for _ in range(3))
    ref._chunks = False  # the generic path for every chunk: the reference
    assert p._chunks, "these models take any frame count: the chunk path applies"
    assert p.engine.layout.batch_axis == (0 if model == "batch-first" else 1)
    generic = _spy_runs(p)
    for x in _chunks(3):
        y = p.step(x)
        np.testing.assert_array_equal(y, ref.step(x))  # same graph calls, same bits
        one = np.stack([frames.step(f) for f in x])  # frame by frame, the one-frame path
        np.testing.assert_allclose(y, one, rtol=1e-5, atol=1e-6)
        assert y.shape == one.shape and y.flags.c_contiguous
    for k, v in ref.state.items():
        np.testing.assert_array_equal(p.state[k], v)
    assert p.frames_seen == ref.frames_seen == sum(SHAPES)
    # a shape's first call binds nothing (it may never recur), its second builds the plan
    # (both generic): from its third call on, the chunk path runs it
    assert generic == [2, 1, 2, 3, 1, 5, 3], generic
    y_prev = p.step(np.ones((2, 3), np.float32))
    kept = y_prev.copy()
    y_next = p.step(np.zeros((2, 3), np.float32))
    assert not np.shares_memory(y_prev, y_next)  # results are copies, not the plan's buffers
    np.testing.assert_array_equal(y_prev, kept)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize(
    "bad", ["nan first", "inf last", "-inf middle", "float32 max scaled to inf"]
)
def test_a_bad_value_in_a_recurring_chunk_is_refused_and_changes_nothing(bad: str) -> None:
    kw: dict = {}
    path = zoo.get("scaled" if bad.startswith("float32") else "lstm")
    if bad.startswith("float32"):  # std 0.5: the largest float32 scales to inf
        c = StreamingPredictor(path).contract
        kw["contract"] = replace(c, preprocessing=replace(c.preprocessing, std=[0.5] * 3))
    p, ref = StreamingPredictor(path, **kw), StreamingPredictor(path, **kw)
    good = RNG.standard_normal((3, 3)).astype(np.float32)
    for q in (p, ref):
        q.step(good), q.step(good)  # (3, 3) now has a bound plan: the chunk path
    x = good.copy()
    value, at = {
        "nan first": (np.nan, (0, 0)),
        "inf last": (np.inf, (2, 2)),
        "-inf middle": (-np.inf, (1, 1)),
        "float32 max scaled to inf": (np.finfo(np.float32).max, (1, 0)),
    }[bad]
    x[at] = value
    before, seen = p.state, p.frames_seen
    with pytest.raises(InputError, match="finite") as info:
        p.step(x)
    assert str(at) in str(info.value)  # the full check names the first bad value
    assert p.frames_seen == seen
    for k, v in before.items():
        np.testing.assert_array_equal(p.state[k], v)
    np.testing.assert_array_equal(p.step(good), ref.step(good))  # the bad frames are gone


def test_long_recurring_chunks_still_run_in_pieces_within_the_budget() -> None:
    path = zoo.get("lstm")
    p, ref = StreamingPredictor(path), _generic(path)
    for q in (p, ref):
        q.engine.budget.limit = 5 * q.engine.budget.row_bytes  # five frames per piece
    generic = _spy_runs(p)
    bound = []
    _, call = p._slot.call, p._slot.call

    def counted(xs, valid):
        bound.append(xs.shape[1])
        return call(xs, valid)

    p._slot.call = counted  # type: ignore[method-assign]
    x = RNG.standard_normal((12, 3)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(p.step(x), ref.step(x))
    assert generic == [12, 12, 12]  # never the chunk path: no plan is kept for 12 frames
    assert bound == [5, 5, 2] * 3  # graph calls of at most five frames
    assert not any(k[0] > 5 for k in p._slot._plans)


def test_threads_sharing_a_stream_lose_no_chunk() -> None:
    path = zoo.get("gru")
    p, ref = StreamingPredictor(path), StreamingPredictor(path)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    threads, calls = 4, 40
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for _ in range(calls):
                y = p.step(x)
                assert y.shape == (2, 2)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=feed) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in pool)
    for _ in range(threads * calls):  # the same chunk every call: order cannot matter
        ref.step(x)
    assert p.frames_seen == ref.frames_seen == 2 * threads * calls
    for k, v in ref.state.items():
        np.testing.assert_array_equal(p.state[k], v)  # no step lost or applied twice
