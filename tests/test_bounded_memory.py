"""Bounded memory (issue 10 §2): the pool's per-batch-size buffers, long inputs in pieces
with the same outputs, pools dropped without shutdown(), compression bombs in snapshots,
and temp files left by interrupted writes. The memory a call, a pool burst and every batch
size take and give back is measured in a fresh process: tests/test_memory_bounds.py."""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _models import zoo

from edgeseq.atomic import STALE_AFTER, clean_stale
from edgeseq.errors import SnapshotError
from edgeseq.runtime import PoolSnapshot, Snapshot, StreamingPredictor, StreamPool


def test_every_batch_size_keeps_a_bounded_number_of_buffers() -> None:
    """Stepping 1..300 streams used to keep one set of state buffers per batch size seen
    (quadratic in max_streams); now a few sizes per octave, whose state on the host is
    one shared scratch table of max_streams rows (their own frame and output buffers are
    a few sizes per octave of one frame each)."""
    pool = StreamPool(zoo.get("lstm"), max_streams=300)
    ids = [pool.open() for _ in range(300)]
    x = np.ones(3, np.float32)
    for n in range(1, 301):
        pool.step({i: x for i in ids[:n]})
    slots, scratch = pool._rows._slots, pool._rows._scratch
    assert len(slots) <= 64 and sum(slots) <= 8 * 300, sorted(slots)
    assert scratch is not None and all(len(block[0]) == 300 for block in scratch)
    for slot in slots.values():
        for parity in (0, 1):
            assert all(np.shares_memory(b.host, scratch[parity]) for b in slot.sets[parity])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_long_chunk_runs_in_pieces_with_the_same_outputs(cell: str) -> None:
    path = zoo.get(cell)
    x = np.random.default_rng(0).standard_normal((300_000, 3)).astype(np.float32)
    whole = StreamingPredictor(path)
    assert whole.engine.budget.frames(1) < len(x)  # it is split
    y = whole.step(x)
    parts = StreamingPredictor(path)
    ref = np.concatenate([parts.step(x[i : i + 4096]) for i in range(0, len(x), 4096)])
    np.testing.assert_array_equal(y, ref)
    for k, v in whole.state.items():
        np.testing.assert_array_equal(v, parts.state[k])


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("edgeseq-pool")}


def test_a_pool_dropped_without_shutdown_releases_its_threads() -> None:
    path = zoo.get("gru")
    # this test's threads, not a count: an earlier test's dropped pool may still be
    # reachable (a cycle) and its thread end when gc.collect() below frees it
    base = _threads()
    refs = []
    for _ in range(20):
        pool = StreamPool(path, max_streams=2, max_wait_ms=0)
        a = pool.open()
        fut = pool.submit(a, np.ones(3, np.float32))
        fut.add_done_callback(lambda f: None)
        fut.result(timeout=10)
        refs.append(weakref.ref(pool))
        del pool, fut
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_threads() - base or any(r() for r in refs)):
        gc.collect()
        time.sleep(0.05)
    assert not any(r() for r in refs), "a dropped pool is still reachable"
    assert not _threads() - base, f"{len(_threads() - base)} pool threads still alive"


def test_pending_requests_keep_a_dropped_pool_alive_until_they_ran() -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=2, max_wait_ms=300)
    a, _ = pool.open(), pool.open()
    fut = pool.submit(a, np.ones(3, np.float32))  # waits up to 300 ms for company
    del pool
    gc.collect()
    assert fut.result(timeout=10).shape == (2,)


# ---------------------------------------------------------------- snapshots
def _bomb(snapshot_bytes: bytes, key: str, shape: tuple[int, ...]) -> bytes:
    """The snapshot with array ``key`` replaced by deflated zeros of ``shape``."""
    src = zipfile.ZipFile(io.BytesIO(snapshot_bytes))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in src.namelist():
            if name == f"{key}.npy":
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with z.open(info, "w", force_zip64=True) as f:
                    f.write(_npy_header(shape))
                    chunk = bytes(1 << 24)
                    for _ in range(int(np.prod(shape)) * 4 // len(chunk)):
                        f.write(chunk)
                continue
            z.writestr(name, src.read(name))
    return out.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def test_a_compression_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    p = StreamingPredictor(zoo.get("lstm"))
    data = p.snapshot().to_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        key = next(n[:-4] for n in z.namelist() if n.startswith("s0_"))
    bomb = _bomb(data, key, (64 << 20,))  # 256 MiB of float32 zeros, deflated
    assert len(bomb) < 4 << 20
    before = p.state
    for load in (p.restore, Snapshot.from_bytes):
        t0 = time.monotonic()
        with pytest.raises(SnapshotError, match=r"compression bomb|this model's is"):
            load(bomb)
        assert time.monotonic() - t0 < 2.0
    for k, v in p.state.items():
        np.testing.assert_array_equal(v, before[k])


def test_declared_shapes_are_checked_against_the_model_before_reading() -> None:
    """An honest-sized archive whose state is the wrong shape: refused from the npy header."""
    p = StreamingPredictor(zoo.get("lstm"))
    good = p.snapshot()
    name = next(iter(good.states))
    want = ", ".join(map(str, good.states[name].shape))  # the pair: (2, 1, 8) or (1, 1, 8)
    wrong = Snapshot(good.contract_hash, {**good.states, name: np.zeros((2, 1, 9), np.float32)})
    with pytest.raises(SnapshotError, match=rf"this model's is float32 \[{want}\]"):
        p.restore(wrong.to_bytes())


@pytest.mark.parametrize("sid", ["abc", None, -1, 1.5, True])
def test_a_crafted_pool_snapshot_id_is_a_snapshot_error(sid: object) -> None:
    pool = StreamPool(zoo.get("gru"), max_streams=2)
    pool.open()
    data = bytearray(pool.snapshot_all().to_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        header = json.loads(bytes(np.load(z.open("header.npy"))).decode())
        arrays = {n[:-4]: np.load(z.open(n)) for n in z.namelist() if n != "header.npy"}
    header["streams"][0]["id"] = sid
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    for load in (PoolSnapshot.from_bytes, pool.restore_all):
        with pytest.raises(SnapshotError, match="'id'"):
            load(buf.getvalue())
    assert pool.ids == [0]


# ---------------------------------------------------------------- interrupted writes
def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "s.snap"
    snap = StreamingPredictor(zoo.get("gru")).snapshot()
    code = (  # a writer killed with -9 after writing its temp file, before the rename
        "import os, sys, time\n"
        "from edgeseq.runtime import Snapshot\n"
        "snap = Snapshot.from_bytes(sys.stdin.buffer.read())\n"
        "os.fsync = lambda fd: (print('writing', flush=True), time.sleep(60))\n"
        f"snap.save({str(target)!r})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
    )
    try:
        proc.stdin.write(snap.to_bytes())  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == b"writing"  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 mid-write
    finally:
        proc.kill()
        proc.wait(timeout=10)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].endswith(".tmp") and not target.exists()
    live = tmp_path / f".s.snap.{_host()}-{os.getpid()}.live.tmp"  # a live writer's: ours
    live.write_bytes(b"in progress")
    legacy = tmp_path / "s.snap.part"  # left by an older edgeseq, over a day ago
    legacy.write_bytes(b"old")
    old = time.time() - STALE_AFTER - 60
    os.utime(legacy, (old, old))
    snap.save(target)  # the next write to the same path cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "s.snap"])
    Snapshot.load(target)
    assert clean_stale(target) == []  # the live writer's file stays


def _host() -> str:
    from edgeseq.atomic import _host as host

    return host()
