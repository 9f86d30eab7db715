"""Fairness and liveness of the pool (issue 10 §3): a long chunk runs in rounds of at most
``max_frames_per_call`` frames (same outputs, all or nothing), callbacks never run on the
worker, and a lone stream's request does not wait for company that cannot come."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _models import zoo

from edgeseq.errors import InputError
from edgeseq.runtime import StreamingPredictor, StreamPool

RNG = np.random.default_rng(11)


def _chunk(n: int) -> np.ndarray:
    return RNG.standard_normal((n, 3)).astype(np.float32)


def _calls(pool: StreamPool) -> list[tuple[int, int]]:
    """Record (rows, frames) of every onnxruntime call the pool's engine makes."""
    seen: list[tuple[int, int]] = []
    run = pool.engine.run

    def counting(x, lengths, slot):
        seen.append((len(x), x.shape[1]))  # (rows, padding included; frames)
        return run(x, lengths, slot)

    pool.engine.run = counting  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("model", ["lstm", "unrolled"])
def test_step_runs_long_chunks_in_rounds_with_the_same_outputs(model: str) -> None:
    path = zoo.get(model)
    pool = StreamPool(path, max_streams=8, max_frames_per_call=6)
    ids = [pool.open() for _ in range(5)]
    solo = {i: StreamingPredictor(path) for i in ids}
    calls = _calls(pool)
    for _ in range(3):
        req = {i: _chunk(int(n)) for i, n in zip(ids, RNG.integers(1, 30, len(ids)))}
        req[ids[0]] = _chunk(57)  # always one long chunk
        out = pool.step(req)
        for i, x in req.items():
            np.testing.assert_allclose(out[i], solo[i].step(x), rtol=0, atol=1e-6)
    cap = 8 if model == "unrolled" else 6  # whole chunks of 4 frames for the unrolled graph
    assert max(frames for _, frames in calls) <= cap
    for i in ids:
        assert pool.snapshot(i).frames_seen == solo[i].frames_seen


def test_a_long_row_does_not_pad_the_whole_batch() -> None:
    """255 one-frame rows and one 5,000-frame row: one call of all rows with a few frames,
    then the long row alone (it used to be one call of 256 rows x 5,000 frames; a graph
    without a lengths input runs the first round as one call per frame count)."""
    pool = StreamPool(zoo.get("lstm"), max_streams=256)
    ids = [pool.open() for _ in range(256)]
    calls = _calls(pool)
    req = {i: _chunk(1)[0] for i in ids[1:]}
    req[ids[0]] = _chunk(5000)
    ref = StreamingPredictor(zoo.get("lstm")).step(req[ids[0]])
    out = pool.step(req)
    np.testing.assert_array_equal(out[ids[0]], ref)
    assert max(frames for _, frames in calls) <= 256  # no call pads to 5,000 frames
    wide = [(rows, frames) for rows, frames in calls if rows > 1]
    assert len(wide) == 1 and wide[0][0] >= 255  # the other rows ran once, with a few frames
    # the long row's 5,000 frames ran in rounds of at most 256, alone after the first
    assert (
        sum(frames for rows, frames in calls if rows == 1)
        + (wide[0][1] if pool.engine.lengths_name else 0)
        >= 5000
    )


def test_a_failure_in_a_later_round_changes_no_stream() -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=4, max_frames_per_call=4)
    a, b = pool.open(), pool.open()
    pool.step({a: _chunk(3), b: _chunk(2)})
    before = {i: pool.snapshot(i) for i in (a, b)}
    run, n = pool.engine.run, [0]

    def failing(x, lengths, slot):
        n[0] += 1
        if n[0] == 3:
            raise InputError("injected failure in round 3")
        return run(x, lengths, slot)

    pool.engine.run = failing  # type: ignore[method-assign]
    with pytest.raises(InputError, match="round 3"):
        pool.step({a: _chunk(11), b: _chunk(2)})
    for i in (a, b):
        after = pool.snapshot(i)
        assert after.frames_seen == before[i].frames_seen
        for k, v in before[i].states.items():
            np.testing.assert_array_equal(after.states[k], v)
    n[0] = 0
    fut = pool.submit(a, _chunk(11))  # rounds 1, 2 commit; round 3 fails: all undone
    with pytest.raises(InputError, match="round 3"):
        fut.result(timeout=10)
    assert pool.snapshot(a).frames_seen == before[a].frames_seen
    for k, v in before[a].states.items():
        np.testing.assert_array_equal(pool.snapshot(a).states[k], v)


def test_a_long_submit_does_not_hold_up_other_streams() -> None:
    path = zoo.get("lstm")
    with StreamPool(path, max_streams=4, max_wait_ms=50, max_frames_per_call=64) as pool:
        a, b = pool.open(), pool.open()
        chunk = _chunk(20_000)
        long = pool.submit(a, chunk)
        short = pool.submit(b, _chunk(1)[0])
        # whether the short one was done when the long one finished (however late this
        # thread gets to register the callback on a loaded machine)
        short_first: list[bool] = []
        long.add_done_callback(lambda f: short_first.append(short.done()))
        y = long.result(timeout=60)
        short.result(timeout=60)
        deadline = time.monotonic() + 10
        while not short_first and time.monotonic() < deadline:
            time.sleep(0.01)
        assert short_first == [True]  # the short one ran in one of the long one's first rounds
        np.testing.assert_array_equal(y, StreamingPredictor(path).step(chunk))


def test_a_callback_waiting_on_another_submit_does_not_stall_the_pool() -> None:
    with StreamPool(zoo.get("gru"), max_streams=4, max_wait_ms=1) as pool:
        a, b = pool.open(), pool.open()
        got: list[np.ndarray] = []
        names: list[str] = []

        def chained(fut) -> None:  # blocks until another request has run
            names.append(threading.current_thread().name)
            got.append(pool.submit(b, np.ones(3, np.float32)).result(timeout=30))

        pool.submit(a, np.ones(3, np.float32)).add_done_callback(chained)
        later = pool.submit(a, np.zeros(3, np.float32)).result(timeout=10)  # not stalled
        deadline = time.monotonic() + 35  # outlasts the callback's own 30 s bound
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(got) == 1 and got[0].shape == (2,) and later.shape == (2,)
        assert names and names[0] != "edgeseq-pool"  # never the worker


def test_a_lone_stream_does_not_wait_for_company() -> None:
    with StreamPool(zoo.get("gru"), max_streams=4, max_wait_ms=1500) as pool:
        a = pool.open()  # the only open stream: no other stream can join its batch
        t0 = time.monotonic()
        pool.submit(a, np.ones(3, np.float32)).result(timeout=10)
        assert time.monotonic() - t0 < 1.0
