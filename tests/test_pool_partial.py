"""StreamPool stepping some of its streams (issue: partial steps), and step_rows with chunks.

A server steps only the streams that sent a frame this tick: random subsets of the pool's
rows, round after round, must give exactly what independent StreamingPredictors give, for
every cell in native and unrolled exports, through step_rows (one frame or chunks of T
frames each) and dict step alike; rows not named keep their state bit for bit; a refused
call (bad frames, unknown ids) changes nothing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from test_pool_batched import _same_states, _states

from edgeseq.errors import InputError, StreamError
from edgeseq.runtime import StreamingPredictor, StreamPool
from edgeseq.runtime._rows import RowStore

CELLS = ("lstm", "gru", "rnn")
MODES = ("native", "unrolled")
TOL = {"native": 1e-6, "unrolled": 1e-5}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every cell in both modes (2 layers, hidden 8; unrolled with a chunk of 4 and its
    one-step graph beside it)."""
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    folder = tmp_path_factory.mktemp("partial")
    out = {}
    for cell in CELLS:
        torch.manual_seed(3)
        model = SeqModel(SeqConfig(cell=cell, input_size=3, hidden_size=8, layers=2))  # type: ignore[arg-type]
        for mode in MODES:
            path = folder / f"{cell}.{mode}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_model(model, path, mode=mode, **({"chunk": 4} if mode == "unrolled" else {}))
            out[cell, mode] = path
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", CELLS)
def test_random_subsets_over_many_rounds_equal_separate_predictors(
    cell: str, mode: str, models: dict[tuple[str, str], Path]
) -> None:
    """40 rounds over a pool of 12 rows: each round steps a random subset (1 to 12
    streams, shuffled) by one frame, a chunk of T frames (step_rows [N, T, F]) or a dict
    step; streams close and new ones take their rows. Every output and every stream's
    frame count equal independent predictors'."""
    path = models[cell, mode]
    rng = np.random.default_rng(hash((cell, mode)) % 2**32)
    pool = StreamPool(path, max_streams=12)
    solo: dict[int, StreamingPredictor] = {}
    sizes = set()
    for r in range(40):
        if r % 9 == 8:
            for sid in rng.permutation(list(solo))[:3].tolist():
                pool.close(sid)
                del solo[sid]
        while len(solo) < 12:
            solo[pool.open()] = StreamingPredictor(path)
        ids = rng.permutation(list(solo))
        chosen = ids[: int(rng.integers(1, 13))].tolist()
        sizes.add(len(chosen))
        kind = r % 3
        t = int(rng.integers(1, 7))
        x = rng.standard_normal((len(chosen), t, 3)).astype(np.float32)
        if kind == 0:  # one frame each
            got = pool.step_rows(chosen, x[:, 0])
            want = np.stack([solo[s].step(f[0]) for s, f in zip(chosen, x)])
        elif kind == 1:  # chunks of t frames each
            got = pool.step_rows(np.array(chosen), x)
            want = np.stack([solo[s].step(f) for s, f in zip(chosen, x)])
        else:
            out = pool.step({s: f for s, f in zip(chosen, x)})
            got = np.stack([out[s] for s in chosen])
            want = np.stack([solo[s].step(f) for s, f in zip(chosen, x)])
        assert got.shape == want.shape, (r, kind)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL[mode], err_msg=f"round {r}")
    assert len(sizes) > 5  # many subset sizes, so many slot sizes and paddings
    for sid, pred in solo.items():
        snap, mine = pool.snapshot(sid), pred.snapshot()
        assert snap.frames_seen == pred.frames_seen == mine.frames_seen
        assert snap.states.keys() == mine.states.keys()
        for name, arr in mine.states.items():
            np.testing.assert_allclose(snap.states[name], arr, rtol=0, atol=TOL[mode])


@pytest.mark.parametrize("cell", CELLS)
def test_step_rows_chunks_equal_step_with_the_same_chunks(
    cell: str, models: dict[tuple[str, str], Path]
) -> None:
    """step_rows(ids, [N, T, F]) gives what step({id: [T, F]}) gives on a twin pool,
    including T = 1 ([N, 1, F]: outputs keep their time axis) and T above
    max_frames_per_call (rounds)."""
    path = models[cell, "native"]
    a, b = (StreamPool(path, max_streams=8, max_frames_per_call=5) for _ in range(2))
    ids_a = [a.open() for _ in range(8)]
    ids_b = [b.open() for _ in range(8)]
    rng = np.random.default_rng(1)
    for t in (1, 3, 12, 1, 7):
        pick = rng.permutation(8)[: int(rng.integers(2, 9))]
        x = rng.standard_normal((len(pick), t, 3)).astype(np.float32)
        got = a.step_rows([ids_a[i] for i in pick], x)
        out = b.step({ids_b[i]: f for i, f in zip(pick, x)})
        want = np.stack([out[ids_b[i]] for i in pick])
        assert got.shape == want.shape and got.shape[:2] == (len(pick), t)
        np.testing.assert_array_equal(got, want)
    _same_states(
        {i: v for i, v in zip(range(8), _states(a).values())},
        {i: v for i, v in zip(range(8), _states(b).values())},
    )


def _bad_chunks(x: np.ndarray) -> list[tuple[object, type, str]]:
    nan = x.copy()
    nan[2, 1, 0] = np.nan
    return [
        (nan, InputError, "stream {bad}: .*NaN or Inf"),
        (x[:, :0], InputError, r"at least one frame per stream \(T >= 1\)"),
        (x[:, :, :2], InputError, "expected 3 values per frame"),
        (x[:4], InputError, r"\[N, T, 3\] .*with N = 5"),
        (x.astype(str), InputError, "dtype"),
        (x.tolist()[:2] + [[[0.0] * 3]] * 3, InputError, "not an array|shape"),
    ]


def test_refused_chunks_and_ids_change_no_stream(models: dict[tuple[str, str], Path]) -> None:
    pool = StreamPool(models["lstm", "native"], max_streams=9, idle_timeout=100)
    gone = pool.open()
    pool.close(gone)
    ids = [pool.open() for _ in range(8)]
    rng = np.random.default_rng(2)
    pool.step_rows(ids, rng.standard_normal((8, 2, 3)).astype(np.float32))
    before, order = _states(pool), list(pool._table._lru)  # type: ignore[arg-type]
    chosen = [ids[6], ids[0], ids[3], ids[5], ids[1]]
    x = rng.standard_normal((5, 4, 3)).astype(np.float32)
    cases = _bad_chunks(x)
    cases += [
        (x, StreamError, f"stream {gone} was closed", [*chosen[:4], gone]),
        (x, StreamError, "unknown stream id 99", [*chosen[:4], 99]),
        (x, StreamError, "appears more than once", [*chosen[:4], chosen[0]]),
    ]
    for case in cases:
        frames, err, match, *named = case
        with pytest.raises(err, match=match.format(bad=chosen[2])):  # type: ignore[union-attr]
            pool.step_rows(named[0] if named else chosen, frames)
        _same_states(before, _states(pool))
        assert list(pool._table._lru) == order  # type: ignore[arg-type]
    pool.step_rows(chosen, x)  # and the pool still steps
    assert pool.snapshot(chosen[0]).frames_seen == 6


def test_a_failing_chunk_call_changes_no_row(
    models: dict[tuple[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime failing in a later round of a chunk (max_frames_per_call 2, T = 5)
    leaves every stream as it was."""
    from edgeseq.runtime._engine import Engine

    pool = StreamPool(models["gru", "native"], max_streams=6, max_frames_per_call=2)
    ids = [pool.open() for _ in range(6)]
    rng = np.random.default_rng(4)
    pool.step_rows(ids, rng.standard_normal((6, 3)).astype(np.float32))
    before = _states(pool)
    run, calls = Engine.run, []

    def failing(self, *a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise InputError("onnxruntime refused the call (injected)")
        return run(self, *a, **k)

    monkeypatch.setattr(Engine, "run", failing)
    with pytest.raises(InputError, match="injected"):
        pool.step_rows(ids[1:4], rng.standard_normal((3, 5, 3)).astype(np.float32))
    assert len(calls) == 3
    _same_states(before, _states(pool))


def _record_bound_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch size of every bound call the pools make from now on, in order."""
    seen: list[int] = []
    bound = RowStore._run_bound

    def spy(self, slot, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(slot.batch)
        return bound(self, slot, *a, **k)

    monkeypatch.setattr(RowStore, "_run_bound", spy)
    return seen


def test_partial_one_frame_steps_run_one_compact_bound_call(
    models: dict[tuple[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """k of N rows: one bound call on a slot of k rows (a bucket size), not the table."""
    seen = _record_bound_batches(monkeypatch)
    pool = StreamPool(models["lstm", "native"], max_streams=64)
    ids = np.array([pool.open() for _ in range(64)])
    rng = np.random.default_rng(6)
    for k in (1, 16, 17, 64):
        pool.step_rows(ids[rng.permutation(64)[:k]], rng.standard_normal((k, 3)).astype(np.float32))
    assert seen == [1, 16, 20, 64]


def test_a_wide_one_frame_call_over_the_call_budget_keeps_a_bound_plan(
    models: dict[tuple[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole-table call of one frame per row whose estimated working memory exceeds the
    call budget (as a 4,096-row LSTM pool's does) still runs through a bound plan, and
    gives what separate predictors give; a chunk that size still gets none."""
    seen = _record_bound_batches(monkeypatch)
    path = models["lstm", "native"]
    pool = StreamPool(path, max_streams=32)
    budget = pool.engine.budget
    budget.limit = 8 * budget.row_bytes  # 32 rows of one frame: four times the budget
    assert budget.oversized(32, 1) and budget.plannable(32, 1) and not budget.plannable(32, 2)
    ids = [pool.open() for _ in range(32)]
    solo = [StreamingPredictor(path) for _ in ids]
    rng = np.random.default_rng(8)
    for _ in range(3):
        x = rng.standard_normal((32, 3)).astype(np.float32)
        got = pool.step_rows(ids, x)
        np.testing.assert_allclose(got, np.stack([p.step(f) for p, f in zip(solo, x)]), atol=1e-6)
    assert seen == [32, 32, 32]
    assert list(pool._rows._whole._plans) == [(1, 3)]  # type: ignore[union-attr]


def test_every_subset_size_keeps_its_slot_in_one_shared_scratch_table(
    models: dict[tuple[str, str], Path],
) -> None:
    """A server steps a different number of streams every tick: each bucket size's slot is
    built once and kept (no rebuild when sizes alternate), and every compact slot's state
    lives in the same scratch memory (one table's worth, however many sizes)."""
    from edgeseq.runtime._rows import bucket

    pool = StreamPool(models["gru", "native"], max_streams=64)
    ids = np.array([pool.open() for _ in range(64)])
    rng = np.random.default_rng(10)
    store = pool._rows
    first: dict[int, int] = {}
    for sweep in range(2):
        for k in rng.permutation(np.arange(1, 64)):
            pool.step_rows(ids[rng.permutation(64)[:k]], np.zeros((k, 3), np.float32))
        if sweep == 0:
            first = {size: id(slot) for size, slot in store._slots.items()}
    assert set(store._slots) == {bucket(k) for k in range(1, 64)}
    assert {size: id(slot) for size, slot in store._slots.items()} == first  # none rebuilt
    scratch = store._scratch
    assert scratch is not None
    for slot in store._slots.values():
        for parity in (0, 1):
            for buf in slot.sets[parity]:
                assert np.shares_memory(buf.host, scratch[parity])
