"""Idle eviction (issue 10 §3): a late use counts as use, ``in``/``len`` are truthful, the
sweep costs O(expired), and ``on_evict`` receives each evicted stream's snapshot outside
the pool's lock and off the submit worker."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _models import zoo

from edgeseq.errors import StreamError
from edgeseq.runtime import Snapshot, StreamingPredictor, StreamPool
from edgeseq.runtime._streams import StreamTable

X = np.ones(3, np.float32)


def _pool(now: list[float], **kw) -> StreamPool:
    return StreamPool(zoo.get("gru"), max_streams=4, idle_timeout=30, clock=lambda: now[0], **kw)


def test_a_stream_used_after_its_timeout_counts_as_use() -> None:
    now = [0.0]
    pool = _pool(now)
    a, b = pool.open(), pool.open()
    now[0] += 31  # both idle past the timeout; no call has swept them yet
    out = pool.step({a: X})  # a late use of a: runs, and keeps a open
    assert out[a].shape == (2,)
    assert a in pool and b not in pool and len(pool) == 1 and pool.ids == [a]
    with pytest.raises(StreamError, match="evicted after 31 s idle"):
        pool.step({b: X})
    now[0] += 29  # a was used 29 s ago: still open
    assert pool.evict_idle() == [] and a in pool


def test_in_and_len_do_not_count_expired_streams() -> None:
    now = [0.0]
    pool = _pool(now)
    ids = [pool.open() for _ in range(3)]
    now[0] += 20
    pool.step({ids[0]: X})
    now[0] += 15  # ids[1], ids[2] idle 35 s
    assert len(pool) == 1
    assert [i in pool for i in ids] == [True, False, False]
    assert True not in pool and 0.0 not in pool  # ids match exactly


def test_on_evict_gets_each_snapshot_once_and_may_call_the_pool() -> None:
    now = [0.0]
    got: list[tuple[int, Snapshot]] = []
    reopened: list[int] = []

    def hook(sid: int, snap: Snapshot) -> None:
        got.append((sid, snap))
        assert sid not in pool  # calls back into the pool: no deadlock
        reopened.append(pool.open(snap))

    pool = _pool(now, on_evict=hook)
    a, b = pool.open(), pool.open()
    xs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    pool.step({a: xs})
    expected = pool.snapshot(a)
    now[0] += 10
    pool.step({b: X})
    now[0] += 25  # a idle 35 s, b 25 s
    assert pool.evict_idle() == [a]
    assert pool.evict_idle() == [] and [sid for sid, _ in got] == [a]
    snap = got[0][1]
    assert snap.frames_seen == 5 and snap.contract_hash == expected.contract_hash
    for k, v in expected.states.items():
        np.testing.assert_array_equal(snap.states[k], v)
    ref = StreamingPredictor(zoo.get("gru"))
    ref.step(xs)
    c = reopened[0]
    np.testing.assert_array_equal(pool.step({c: X})[c], ref.step(X))


def test_on_evict_from_the_submit_worker_runs_off_it() -> None:
    """A sweep by the submit worker hands the hook to the callback thread, so a hook that
    waits on another submit does not stall the worker that must run it."""
    now = [0.0]
    threads: list[str] = []
    results = []

    def hook(sid: int, snap: Snapshot) -> None:
        threads.append(threading.current_thread().name)
        results.append(pool.submit(keep, X).result(timeout=10))

    pool = _pool(now, on_evict=hook, max_wait_ms=0)
    keep, idle = pool.open(), pool.open()
    now[0] += 31
    pool.submit(keep, X).result(timeout=10)  # the worker's sweep evicts `idle`
    for _ in range(200):
        if results:
            break
        threading.Event().wait(0.05)
    assert threads == ["edgeseq-pool-callbacks"] and len(results) == 1
    assert idle not in pool and keep in pool
    pool.close()


def test_a_hook_that_raises_is_logged_not_raised(caplog) -> None:
    now = [0.0]

    def hook(sid: int, snap: Snapshot) -> None:
        raise RuntimeError("disk full")

    pool = _pool(now, on_evict=hook)
    a, b = pool.open(), pool.open()
    now[0] += 31
    assert pool.step({a: X})[a].shape == (2,)  # the step's outputs are not lost
    assert b not in pool and "disk full" in caplog.text


def test_the_sweep_visits_only_expired_streams() -> None:
    """O(expired): with 50,000 open streams and 3 expired, a sweep looks at 4."""

    class Counting(dict):
        reads = 0

        def __getitem__(self, key):
            Counting.reads += 1
            return super().__getitem__(key)

    table = StreamTable(50_000, idle_timeout=30)
    sids = [table.add(now=float(i < 3) * -100.0)[0] for i in range(50_000)]
    table.open = Counting(table.open)
    assert [sid for sid, _ in table.expired(now=0.0)] == sids[:3]
    assert Counting.reads == 4
    table.used([(sids[0], table.open[sids[0]], 1)], now=0.0)  # the youngest now
    Counting.reads = 0
    assert [sid for sid, _ in table.expired(now=0.0)] == sids[1:3]
    assert Counting.reads == 3


def test_a_pool_step_with_many_open_streams_sweeps_only_the_expired() -> None:
    """Through the pool: with 20,000 open streams, a step of one stream reads the table
    for that stream and the expired ones only (it scanned all 20,000 on every call)."""

    class Counting(dict):
        reads = 0

        def __getitem__(self, key):
            Counting.reads += 1
            return super().__getitem__(key)

        def get(self, key, default=None):
            Counting.reads += 1
            return super().get(key, default)

    now = [0.0]
    pool = StreamPool(zoo.get("gru"), max_streams=20_000, idle_timeout=30, clock=lambda: now[0])
    old = [pool.open() for _ in range(2)]
    now[0] += 20
    ids = [pool.open() for _ in range(19_998)]
    now[0] += 15  # the first two idle 35 s, the rest 15 s
    table = pool._table
    table.open = Counting(table.open)
    assert pool.step({ids[0]: X})[ids[0]].shape == (2,)
    assert Counting.reads <= 10, f"{Counting.reads} reads of the stream table for one step"
    assert [i in pool for i in old] == [False, False] and len(pool) == 19_998
