"""Snapshots: bytes and files round-trip and resume exactly, writes are atomic, corrupt or
foreign snapshots are refused with SnapshotError and change nothing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _models import VAD_CONTEXT, zoo

from edgeseq.errors import SnapshotError, StreamError
from edgeseq.runtime import PoolSnapshot, Snapshot, StreamingPredictor, StreamPool

RNG = np.random.default_rng(0)
XS = RNG.standard_normal((30, 3)).astype(np.float32)


def _resumes(a: StreamingPredictor, b: StreamingPredictor) -> None:
    for x in XS[20:]:
        np.testing.assert_array_equal(a.step(x), b.step(x))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_bytes_round_trip_resumes_exactly(cell: str) -> None:
    path = zoo.get(cell)
    a = StreamingPredictor(path)
    a.step(XS[:20])
    data = a.snapshot().to_bytes()
    b = StreamingPredictor(path)  # a "restarted device"
    b.restore(Snapshot.from_bytes(data))
    assert b.frames_seen == 20
    _resumes(a, b)
    c = StreamingPredictor(path)
    c.restore(data)  # bytes accepted directly
    a.restore(data)
    _resumes(a, c)


def test_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = zoo.get("lstm")
    a = StreamingPredictor(path)
    a.step(XS[:10])
    target = tmp_path / "stream.snap"
    a.snapshot().save(target)
    old = target.read_bytes()
    a.step(XS[10:20])
    a.snapshot().save(target)  # replaces
    assert target.read_bytes() != old
    b = StreamingPredictor(path)
    b.restore(Snapshot.load(target))
    _resumes(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["stream.snap"]  # no temp files left


def test_crash_mid_write_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = StreamingPredictor(zoo.get("gru"))
    target = tmp_path / "s.snap"
    p.snapshot().save(target)
    before = target.read_bytes()
    p.step(XS)

    def crash(*args: object) -> None:
        raise OSError("power cut")

    for fn in ("fsync", "replace"):
        with monkeypatch.context() as m:
            m.setattr(os, fn, crash)
            with pytest.raises(OSError, match="power cut"):
                p.snapshot().save(target)
        assert target.read_bytes() == before
        assert [q.name for q in tmp_path.iterdir()] == ["s.snap"]
    Snapshot.load(target)  # still a valid snapshot


def _corruptions(data: bytes) -> dict[str, bytes]:
    mid = len(data) // 2
    flipped = bytearray(data)
    flipped[mid] ^= 0xFF
    return {
        "truncated": data[:mid],
        "flipped byte": bytes(flipped),
        "empty": b"",
        "garbage": os.urandom(200),
        "not a snapshot": b"PK\x03\x04" + b"\x00" * 100,
    }


def test_corrupt_bytes_raise_snapshot_error_and_change_nothing() -> None:
    p = StreamingPredictor(zoo.get("lstm"))
    p.step(XS[:5])
    data = p.snapshot().to_bytes()
    before = p.state
    for name, bad in _corruptions(data).items():
        with pytest.raises(SnapshotError) as info:
            p.restore(bad)
        assert "expected" in str(info.value), name
        for k, v in p.state.items():
            np.testing.assert_array_equal(v, before[k])


def test_corrupt_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="cannot read"):
        Snapshot.load(tmp_path / "missing.snap")
    (tmp_path / "bad.snap").write_bytes(b"nonsense")
    with pytest.raises(SnapshotError, match="corrupt"):
        Snapshot.load(tmp_path / "bad.snap")


def test_snapshot_of_another_model_is_refused() -> None:
    a, b = StreamingPredictor(zoo.get("lstm")), StreamingPredictor(zoo.get("gru"))
    b.step(XS[:4])
    before = b.state
    for snap in (a.snapshot(), a.snapshot().to_bytes()):
        with pytest.raises(SnapshotError, match=r"belongs to a model with contract"):
            b.restore(snap)
    for k, v in b.state.items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(SnapshotError, match="expects a Snapshot"):
        b.restore({"h": 1})  # type: ignore[arg-type]


def test_kinds_are_not_mixed() -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=2)
    pool.open()
    with pytest.raises(SnapshotError, match="PoolSnapshot"):
        Snapshot.from_bytes(pool.snapshot_all().to_bytes())
    one = StreamingPredictor(zoo.get("gru")).snapshot().to_bytes()
    with pytest.raises(SnapshotError, match="'stream' snapshot"):
        PoolSnapshot.from_bytes(one)


def test_pool_snapshot_resumes_every_stream(tmp_path: Path) -> None:
    path = zoo.get("lstm")
    pool = StreamPool(path, max_streams=4)
    ids = [pool.open() for _ in range(3)]
    pool.close(ids[1])
    live = [ids[0], ids[2]]
    pool.step({i: XS[: 3 + i] for i in live})
    pool.snapshot_all().save(tmp_path / "pool.snap")
    fresh = StreamPool(path, max_streams=4)
    fresh.restore_all(PoolSnapshot.load(tmp_path / "pool.snap"))
    assert fresh.ids == live
    x = {i: XS[10:12] for i in live}
    ref, got = pool.step(x), fresh.step(x)
    for i in live:
        np.testing.assert_array_equal(ref[i], got[i])
    assert fresh.open() == 3  # new ids continue after the restored ones
    other = StreamPool(zoo.get("gru"), max_streams=4)
    with pytest.raises(SnapshotError, match="pool snapshot belongs"):
        other.restore_all(PoolSnapshot(pool.snapshot_all().contract_hash, {}, 0))
    small = StreamPool(path, max_streams=1)
    with pytest.raises(StreamError, match="max_streams"):
        small.restore_all(pool.snapshot_all())


def test_pool_and_predictor_snapshots_are_interchangeable() -> None:
    path = zoo.get("gru")
    p = StreamingPredictor(path)
    p.step(XS[:7])
    pool = StreamPool(path, max_streams=2)
    sid = pool.open(p.snapshot())  # a predictor's stream continues inside a pool
    q = StreamingPredictor(path)
    np.testing.assert_array_equal(pool.step({sid: XS[7]})[sid], p.step(XS[7]))
    q.restore(pool.snapshot(sid).to_bytes())  # and back out
    np.testing.assert_array_equal(q.step(XS[8]), p.step(XS[8]))
    other = StreamingPredictor(zoo.get("lstm")).snapshot()
    before = pool.snapshot(sid).states
    with pytest.raises(SnapshotError):
        pool.restore(sid, other)
    for k, v in pool.snapshot(sid).states.items():
        np.testing.assert_array_equal(v, before[k])


def test_left_context_travels_with_the_snapshot() -> None:
    kw = {"state": {"state": "stateN"}, "constants": {"sr": np.array(16000)}}
    path = zoo.get("vad")
    a = StreamingPredictor(path, context=VAD_CONTEXT, **kw)
    samples = RNG.standard_normal(50).astype(np.float32)
    a.step(samples[:23])
    snap = Snapshot.from_bytes(a.snapshot().to_bytes())
    assert snap.context.shape == (1, VAD_CONTEXT)
    b = StreamingPredictor(path, context=VAD_CONTEXT, **kw)
    b.restore(snap)
    np.testing.assert_array_equal(a.step(samples[23:]), b.step(samples[23:]))
    no_ctx = StreamingPredictor(path, contract=a.contract, constants=kw["constants"])
    with pytest.raises(SnapshotError, match="context"):
        no_ctx.restore(snap)


def test_snapshot_of_same_shaped_model_with_other_weights_is_refused(tmp_path) -> None:
    """The contract records a digest of the weights, so a snapshot names its exact model."""
    import torch

    from edgeseq.errors import SnapshotError
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.models import SeqConfig, SeqModel

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = SeqModel(SeqConfig(cell="gru", input_size=3, hidden_size=4, output_size=2))
        paths.append(tmp_path / f"m{seed}.onnx")
        export_model(model, paths[-1])
    a, b = StreamingPredictor(paths[0]), StreamingPredictor(paths[1])
    assert a.contract.producer["weights_sha256"] != b.contract.producer["weights_sha256"]
    a.step(np.ones((2, 3), np.float32))
    with pytest.raises(SnapshotError):
        b.restore(a.snapshot())
    again = StreamingPredictor(paths[0])
    again.restore(a.snapshot())  # the same file: accepted
