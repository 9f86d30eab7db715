"""StreamPool.step_rows (issue 20): one frame for each of N streams as one ``[N, ...]``
array in, ``[N, ...]`` outputs out. It must give what separate predictors give, in the
order of the ids, mixed with dict ``step`` calls on the same streams; refuse bad ids and
frames by name with no stream changed; and count frames and idle order as ``step``."""

from __future__ import annotations

import numpy as np
import pytest
from _models import VAD_CONTEXT, zoo
from test_pool_batched import TOL, _bound_only, _same_states, _states

from edgeseq.errors import InputError, StreamError
from edgeseq.runtime import StreamingPredictor, StreamPool

VAD = {"state": {"state": "stateN"}, "constants": {"sr": np.array(16000)}}
CASES = {  # model, pool options, tolerance
    "lstm": ("lstm", {}, TOL["lstm"]),
    "gru": ("gru", {}, TOL["gru"]),
    "rnn": ("rnn", {}, TOL["rnn"]),
    "unrolled": ("unrolled", {}, TOL["unrolled"]),
    "scaled": ("scaled", {}, TOL["scaled"]),
    # the generic route (outputs stacked): a resident table; left context of raw samples
    "unrolled-resident": ("unrolled", {"resident": True}, TOL["unrolled"]),
    "vad-context": ("vad", {"context": VAD_CONTEXT, **VAD}, 1e-6),
    "char_lm": ("char_lm", {}, 1e-6),  # token ids: frames [N]
}


def _frames(pool: StreamPool, rng: np.random.Generator, n: int) -> np.ndarray:
    spec = pool.engine.frames
    if spec.is_int:
        return rng.integers(0, spec.vocab_size or 8, n).astype(spec.dtype)
    return rng.standard_normal((n, *spec.one_shape)).astype(spec.dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_step_rows_mixed_with_step_equals_separate_predictors(case: str) -> None:
    """Rounds alternate step_rows (ids shuffled, as a list or an int array, all streams or
    a few) and dict steps of the same streams; streams close and new ones reuse rows."""
    model, opts, tol = CASES[case]
    path = zoo.get(model)
    rng = np.random.default_rng(17)
    pool = StreamPool(path, max_streams=6, **opts)
    solo_opts = {k: v for k, v in opts.items() if k != "resident"}
    solo: dict[int, StreamingPredictor] = {}
    for r in range(12):
        if r in (5, 9):
            for sid in list(solo)[:2]:
                pool.close(sid)
                del solo[sid]
        while len(solo) < 6:
            solo[pool.open()] = StreamingPredictor(path, **solo_opts)
        ids = list(solo)
        rng.shuffle(ids)
        chosen = ids if r % 3 == 0 else ids[: int(rng.integers(1, 6))]
        x = _frames(pool, rng, len(chosen))
        if r % 2:
            out = pool.step(dict(zip(chosen, x)))
            got = np.stack([out[sid] for sid in chosen])
        else:
            got = pool.step_rows(np.array(chosen) if r % 4 else chosen, x)
            assert isinstance(got, np.ndarray) and len(got) == len(chosen)
        want = np.stack([solo[sid].step(f) for sid, f in zip(chosen, x)])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    for sid, pred in solo.items():
        assert pool.snapshot(sid).frames_seen == pred.frames_seen


def test_step_rows_takes_the_bound_route_and_leaves_idle_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = _bound_only(monkeypatch)
    pool = StreamPool(zoo.get("lstm"), max_streams=8)
    ids = [pool.open() for _ in range(8)]
    rng = np.random.default_rng(3)
    pool.step_rows(ids[::-1], _frames(pool, rng, 8))  # every row, permuted
    idle = ids[1::2]
    before = {s: v for s, v in _states(pool).items() if s in idle}
    for _ in range(3):
        pool.step_rows(ids[::2], _frames(pool, rng, 4))
    _same_states(before, {s: v for s, v in _states(pool).items() if s in idle})
    assert len(bound) == 4


@pytest.mark.parametrize(
    "bad, error",
    [
        (lambda x: x.__setitem__((2, 1), np.nan), "stream {bad}: .*NaN or Inf"),
        (
            lambda x: np.where(np.arange(5)[:, None] == 2, np.float64(1e39), x),
            "stream {bad}: .*after the cast",
        ),
        (lambda x: x[:, :2], "expected 3 values per frame"),
        (lambda x: x[:4], r"shaped \[N, 3\] .*with N = 5"),
        (lambda x: x[:, :, None], "expected 3 values per frame"),  # [N, T=3, 1]: a chunk
        (lambda x: x[:, None, :, None], r"shaped \[N, 3\] \(one frame each\) or \[N, T, 3\]"),
        (lambda x: x.astype(str), "dtype"),
    ],
)
def test_bad_frames_are_refused_with_no_stream_changed(bad, error: str) -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=6, idle_timeout=100)
    ids = [pool.open() for _ in range(6)]
    rng = np.random.default_rng(5)
    pool.step_rows(ids, _frames(pool, rng, 6))
    before, order = _states(pool), list(pool._table._lru)  # type: ignore[arg-type]
    chosen = [ids[4], ids[0], ids[3], ids[5], ids[1]]
    x = _frames(pool, rng, 5)
    changed = bad(x)
    with pytest.raises(InputError, match=error.format(bad=chosen[2])):
        pool.step_rows(chosen, x if changed is None else changed)
    _same_states(before, _states(pool))
    assert list(pool._table._lru) == order  # type: ignore[arg-type]


def test_bad_ids_are_refused_by_name_with_no_stream_changed() -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=6)
    a, b, c = (pool.open() for _ in range(3))
    pool.close(pool.open())
    x = np.zeros((3, 3), np.float32)
    pool.step_rows([a, b, c], x)
    before = _states(pool)
    for ids, err, match in (
        ([a, 99, c], StreamError, "unknown stream id 99"),
        ([a, 3, c], StreamError, "stream 3 was closed"),
        ([a, True, c], StreamError, "stream id True is a bool"),
        ([a, b, a], StreamError, f"stream {a} appears more than once"),
        (np.array([c, b, b]), StreamError, f"stream {b} appears more than once"),
        (np.array([a, b, c], np.float64), InputError, "1-D integer array"),
        ("abc", InputError, "sequence of stream ids"),
        ([], InputError, "at least one stream id"),
    ):
        with pytest.raises(err, match=match):
            pool.step_rows(ids, x[: max(len(ids), 1)])
        _same_states(before, _states(pool))
    y = pool.step_rows([np.int64(c), a], x[:2])  # numpy ints address streams too
    assert y.shape[0] == 2


def test_counters_and_idle_order_follow_step_rows() -> None:
    now = [0.0]
    pool = StreamPool(zoo.get("gru"), max_streams=4, idle_timeout=10, clock=lambda: now[0])
    a, b, c = pool.open(), pool.open(), pool.open()
    x = np.zeros((2, 3), np.float32)
    for t in (1.0, 2.0, 3.0):
        now[0] = t
        pool.step_rows([c, a], x)
    now[0] = 12.5  # b idle 12.5 s; a and c 9.5 s
    assert pool.evict_idle() == [b]
    assert [pool.snapshot(s).frames_seen for s in (a, c)] == [3, 3]
    now[0] = 13.5  # a and c 10.5 s idle, in the order the last call named them
    assert pool.evict_idle() == [c, a]
    d, e = pool.open(), pool.open()
    now[0] = 30.0  # both expired, not yet swept: the call that names d counts as its use
    pool.step_rows([d], x[:1])
    assert pool.ids == [d] and e not in pool.ids  # e was swept


def test_a_windowed_pool_points_to_step() -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=2, window=2)
    sid = pool.open()
    with pytest.raises(InputError, match="has a window"):
        pool.step_rows([sid], np.zeros((1, 3), np.float32))
