"""Many threads, many streams: submit() and step() results are bit-identical to a sequential
reference (buffers reused, both fronts on the same streams: issue 10) and no stream ever
sees another's state; a bad stream in a batched step refuses the whole step and changes no
stream (issue 4 §6)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _models import zoo

from edgeseq.errors import InputError, SnapshotError, StreamError
from edgeseq.runtime import StreamingPredictor, StreamPool

THREADS, STREAMS, STEPS = 8, 64, 200


def test_threads_submitting_to_one_pool_match_a_sequential_reference() -> None:
    """8 threads x 8 streams each, 200 calls per stream: mostly submit() from one reused
    buffer per stream (refilled while the request may still be queued), every fifth call a
    synchronous step() of the same streams issued without waiting for their pending
    submits. Every output and final state is bit-identical to stepping each stream alone."""
    path = zoo.get("lstm")  # ORT's LSTM is batch-invariant: bits do not depend on batching
    rng = np.random.default_rng(0)
    # each stream gets its own frames; one frame or a chunk of 2-3 frames per step
    sizes = rng.choice([0, 0, 0, 2, 3], size=(STREAMS, STEPS))
    frames = [
        [rng.standard_normal((n, 3) if n else 3).astype(np.float32) for n in row] for row in sizes
    ]
    with StreamPool(path, max_streams=STREAMS, max_batch=32, max_wait_ms=1) as pool:
        ids = [pool.open() for _ in range(STREAMS)]
        results: dict[int, list] = {i: [] for i in range(STREAMS)}
        errors: list[BaseException] = []

        def client(t: int) -> None:
            mine = range(t, STREAMS, THREADS)  # 8 streams per thread
            buffers: dict[tuple[int, tuple], np.ndarray] = {}  # reused, as audio loops do
            try:
                for step in range(STEPS):
                    if step % 5 == 4:  # same streams, their submits possibly still queued
                        out = pool.step({ids[s]: frames[s][step] for s in mine})
                        for s in mine:
                            results[s].append(out[ids[s]])
                        continue
                    for s in mine:
                        x = frames[s][step]
                        buf = buffers.setdefault((s, x.shape), np.empty_like(x))
                        buf[...] = x
                        results[s].append(pool.submit(ids[s], buf))
                for s in mine:
                    for b in buffers.values():
                        b[...] = np.nan  # too late to matter: submit owned its frames
                    results[s] = [r.result(timeout=60) if hasattr(r, "result") else r
                                  for r in results[s]]  # fmt: skip
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        workers = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors, errors[:3]
        final = {s: pool.snapshot(ids[s]).states for s in range(STREAMS)}
    ref = StreamingPredictor(path)
    for s in range(STREAMS):
        ref.reset()
        for step in range(STEPS):
            expect = ref.step(frames[s][step])
            np.testing.assert_array_equal(results[s][step], expect, err_msg=f"stream {s}")
        for k, v in ref.snapshot().states.items():  # the graph's pairs, both
            np.testing.assert_array_equal(final[s][k], v)


@pytest.fixture
def busy_pool() -> tuple[StreamPool, list[int]]:
    pool = StreamPool(zoo.get("gru"), max_streams=3)
    ids = [pool.open() for _ in range(3)]
    pool.step({i: np.full((2, 3), i, np.float32) for i in ids})
    return pool, ids


def _states(pool: StreamPool, ids: list[int]) -> list[dict[str, np.ndarray]]:
    return [pool.snapshot(i).states for i in ids]


def _unchanged(pool: StreamPool, ids: list[int], before: list[dict[str, np.ndarray]]) -> None:
    for i, b in zip(ids, _states(pool, ids)):
        for k, v in b.items():
            np.testing.assert_array_equal(v, before[i][k])


BAD_STEPS = {
    "NaN in one stream": (InputError, lambda ids: {ids[0]: np.ones(3), ids[1]: [np.nan, 0, 0]}),
    "wrong shape": (InputError, lambda ids: {ids[0]: np.ones(3), ids[2]: np.ones((2, 5))}),
    "wrong dtype": (InputError, lambda ids: {ids[1]: np.ones(3), ids[2]: np.array(["a"] * 3)}),
    "zero frames": (InputError, lambda ids: {ids[0]: np.ones(3), ids[1]: np.ones((0, 3))}),
    "unknown id": (StreamError, lambda ids: {ids[0]: np.ones(3), 999: np.ones(3)}),
}


@pytest.mark.parametrize("case", list(BAD_STEPS))
def test_a_bad_stream_refuses_the_whole_step(busy_pool, case: str) -> None:
    pool, ids = busy_pool
    before = _states(pool, ids)
    seen = [pool.snapshot(i).frames_seen for i in ids]
    error, make = BAD_STEPS[case]
    with pytest.raises(error) as info:
        pool.step(make(ids))
    text = str(info.value)
    assert "expected" in text, text
    if error is InputError:
        assert "stream" in text  # says which stream was wrong
    _unchanged(pool, ids, before)
    assert [pool.snapshot(i).frames_seen for i in ids] == seen


def test_closed_id_full_pool_and_foreign_snapshot_change_nothing(busy_pool) -> None:
    pool, ids = busy_pool
    before = _states(pool, ids)
    with pytest.raises(StreamError, match="full"):
        pool.open()
    pool.close(ids[2])
    with pytest.raises(StreamError, match="closed"):
        pool.step({ids[0]: np.ones(3), ids[2]: np.ones(3)})
    foreign = StreamingPredictor(zoo.get("lstm")).snapshot()
    with pytest.raises(SnapshotError):
        pool.restore(ids[0], foreign)
    with pytest.raises(SnapshotError):
        pool.open(foreign)
    assert len(pool) == 2  # the refused open() did not take a row
    _unchanged(pool, ids[:2], before)
