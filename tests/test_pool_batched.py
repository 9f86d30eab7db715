"""StreamPool's many-streams path (one frame per stream, issue 20): rows looked up, frames
checked and copied, outputs gathered and counters updated as whole arrays. It must give
what separate predictors give while streams join and leave, leave idle rows untouched,
and refuse a bad frame of any one stream with no stream changed."""

from __future__ import annotations

import numpy as np
import pytest
from _models import zoo

from edgeseq.errors import InputError, StreamError
from edgeseq.runtime import StreamingPredictor, StreamPool
from edgeseq.runtime._frames import FrameSpec
from edgeseq.runtime._rows import RowStore

TOL = {"lstm": 0.0, "gru": 0.0, "rnn": 1e-6, "unrolled": 1e-6, "scaled": 1e-6}


def _bound_only(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the generic per-frame route fail, so a test proves the bound route ran; the
    list counts the bound calls."""
    calls: list[int] = []
    bound = RowStore._run_bound

    def counted(self, *a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        return bound(self, *a, **k)

    def refused(self, *a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("took the generic route")

    monkeypatch.setattr(RowStore, "_run_bound", counted)
    monkeypatch.setattr(RowStore, "_run_checked", refused)
    return calls


def _states(pool: StreamPool) -> dict[int, tuple[dict[str, np.ndarray], int]]:
    return {s: (snap.states, snap.frames_seen) for s, snap in pool.snapshot_all().streams.items()}


def _same_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for sid in a:
        assert a[sid][1] == b[sid][1], f"stream {sid}: frames_seen changed"
        for name, arr in a[sid][0].items():
            np.testing.assert_array_equal(arr, b[sid][0][name], err_msg=f"stream {sid} {name}")


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn", "unrolled", "scaled"])
def test_streams_joining_and_leaving_equal_separate_predictors(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every round steps a different set of streams in a shuffled order: all of them (the
    rows run in place, permuted), a few (gathered into a smaller padded slot), after
    streams closed and new ones reused their rows."""
    path = zoo.get(model)
    f = StreamPool(path, max_streams=1).contract.frames.shape[-1]
    bound = _bound_only(monkeypatch)
    rng = np.random.default_rng(7)
    pool = StreamPool(path, max_streams=6)
    solo: dict[int, StreamingPredictor] = {}
    for r in range(14):
        if r in (4, 9):  # two streams leave, new ones take their rows
            for sid in list(solo)[:2]:
                pool.close(sid)
                del solo[sid]
        while len(solo) < 6:
            solo[pool.open()] = StreamingPredictor(path)
        ids = list(solo)
        rng.shuffle(ids)
        chosen = ids if r % 3 == 0 else ids[: int(rng.integers(1, 6))]
        req = {sid: rng.standard_normal(f).astype(np.float32) for sid in chosen}
        out = pool.step(req)
        assert list(out) == chosen
        for sid in chosen:
            want = solo[sid].step(req[sid])
            assert out[sid].shape == want.shape
            np.testing.assert_allclose(out[sid], want, rtol=0, atol=TOL[model])
    assert len(bound) == 14
    for sid, pred in solo.items():
        snap, want = pool.snapshot(sid), pred.snapshot()
        assert snap.frames_seen == want.frames_seen
        for name, arr in snap.states.items():
            np.testing.assert_allclose(arr, want.states[name], rtol=0, atol=TOL[model])


def test_rows_not_stepped_keep_their_state_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    bound = _bound_only(monkeypatch)
    pool = StreamPool(zoo.get("lstm"), max_streams=8)
    ids = [pool.open() for _ in range(8)]
    rng = np.random.default_rng(3)
    pool.step({sid: rng.standard_normal(3).astype(np.float32) for sid in ids})
    idle = ids[1::2]
    before = {s: v for s, v in _states(pool).items() if s in idle}
    for _ in range(5):
        pool.step({sid: rng.standard_normal(3).astype(np.float32) for sid in ids[::2]})
    after = {s: v for s, v in _states(pool).items() if s in idle}
    _same_states(before, after)
    assert len(bound) == 6


@pytest.mark.parametrize("every", [True, False], ids=["all-rows", "some-rows"])
@pytest.mark.parametrize(
    "bad, error",
    [
        (np.array([np.nan, 0, 0], np.float32), "NaN or Inf"),
        (np.array([1e39, 0, 0]), "after the cast to float32"),  # float64, finite, overflows
        (np.zeros(4, np.float32), "expected 3 values per frame"),
        (np.zeros((3, 1), np.float32), "expected 3 values per frame"),
        ("x", "dtype"),
    ],
)
def test_a_bad_frame_of_one_stream_changes_no_stream(every: bool, bad, error: str) -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=6)
    ids = [pool.open() for _ in range(6)]
    rng = np.random.default_rng(5)
    pool.step({sid: rng.standard_normal(3).astype(np.float32) for sid in ids})
    before = _states(pool)
    chosen = ids if every else ids[1:4]
    req = {sid: rng.standard_normal(3).astype(np.float32) for sid in chosen}
    req[chosen[-2]] = bad
    with pytest.raises(InputError, match=error) as info:
        pool.step(req)
    assert f"stream {chosen[-2]}" in str(info.value)
    _same_states(before, _states(pool))
    with pytest.raises(StreamError, match="unknown stream id 99"):
        pool.step({**{sid: req[chosen[0]] for sid in chosen}, 99: req[chosen[0]]})
    _same_states(before, _states(pool))


def test_frames_the_bound_route_cannot_take_still_run_exactly() -> None:
    """float64 frames (cast), strided views and lists take the checking route; values
    near float32's largest run too: each with the same outputs as separate predictors."""
    path = zoo.get("gru")
    pool = StreamPool(path, max_streams=4)
    ids = [pool.open() for _ in range(4)]
    solo = {sid: StreamingPredictor(path) for sid in ids}
    rng = np.random.default_rng(11)
    wide = rng.standard_normal((4, 6)).astype(np.float32)
    for frames in (
        [rng.standard_normal(3) for _ in ids],  # float64
        [wide[i, ::2] for i in range(4)],  # not contiguous
        [rng.standard_normal(3).astype(np.float32).tolist() for _ in ids],
        [np.full(3, 3e38, np.float32) for _ in ids],
    ):
        out = pool.step(dict(zip(ids, frames)))
        for sid, x in zip(ids, frames):
            np.testing.assert_array_equal(out[sid], solo[sid].step(np.asarray(x)))


def test_joined_refuses_what_is_not_one_frame_each() -> None:
    spec = StreamPool(zoo.get("gru"), max_streams=1).engine.frames
    assert isinstance(spec, FrameSpec)
    ok = [np.arange(3, dtype=np.float32), np.ones(3, np.float32)]
    x = spec.joined(ok)
    assert x is not None and x.shape == (2, 3)
    np.testing.assert_array_equal(x, np.stack(ok))
    for bad in (
        [ok[0], np.zeros((3, 1), np.float32)],  # same bytes, not a frame
        [ok[0], np.zeros(3, np.int32)],  # same size, other dtype
        [ok[0], np.zeros(2, np.float16), np.zeros(2, np.float64)],  # bytes that add up
        [ok[0], np.arange(6, dtype=np.float32)[::2]],  # strided
        [ok[0], [0.0, 1.0, 2.0]],
        [ok[0], np.float32(1.0)],
        [],
    ):
        assert spec.joined(bad) is None


def test_counters_and_idle_order_follow_batched_steps() -> None:
    now = [0.0]
    pool = StreamPool(zoo.get("gru"), max_streams=4, idle_timeout=10, clock=lambda: now[0])
    a, b, c = pool.open(), pool.open(), pool.open()
    x = np.zeros(3, np.float32)
    for t in (1.0, 2.0, 3.0):
        now[0] = t
        pool.step({c: x, a: x})
    now[0] = 12.5  # b idle 12.5 s; a and c 9.5 s
    assert pool.evict_idle() == [b]
    assert [pool.snapshot(s).frames_seen for s in (a, c)] == [3, 3]
    now[0] = 13.5  # a and c 10.5 s idle, in the order the last call named them
    assert pool.evict_idle() == [c, a]


@pytest.mark.parametrize("model", ["gru", "scaled"])
def test_submitted_single_frames_run_as_one_array(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submit worker's batches of one frame per stream (already checked, scaled once)
    take the bound route; a request of a chunk in the batch takes the generic one."""
    path = zoo.get(model)
    bound = _bound_only(monkeypatch)
    generic: list[int] = []
    run = RowStore.run
    monkeypatch.setattr(RowStore, "run", lambda self, items: generic.append(1) or run(self, items))
    pool = StreamPool(path, max_streams=8, max_wait_ms=50)
    f = pool.contract.frames.shape[-1]
    ids = [pool.open() for _ in range(8)]
    solo = {sid: StreamingPredictor(path) for sid in ids}
    rng = np.random.default_rng(13)
    for r in range(3):
        req = {sid: rng.standard_normal(f).astype(np.float32) for sid in ids}
        if r == 2:
            req[ids[0]] = rng.standard_normal((3, f)).astype(np.float32)
        futures = {sid: pool.submit(sid, x) for sid, x in req.items()}
        for sid, fut in futures.items():
            np.testing.assert_allclose(
                fut.result(timeout=30), solo[sid].step(req[sid]), rtol=0, atol=TOL[model]
            )
    pool.shutdown()
    assert bound and generic  # singles batched through the bound plan; the chunk's batch not
