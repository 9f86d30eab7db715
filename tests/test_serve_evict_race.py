"""A stream evicted between a frames message's arrival and its step (``serve/_ticks.py``).

The race is made deterministic, without sleeps: the pool's clock is a test clock, the
eviction is run by hand after the message is queued and before its tick flushes, and a
gate holds the eviction hook until the step has seen the stale pool id. Whatever the
timing, the message is answered from the stream's own state, reopened from its snapshot
(docs/protocol.md, save reason ``idle``), or — when every slot is taken — refused with
``at_capacity``, applying nothing; no other message's answer changes, and no stream is
ever stepped on another's state.
"""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
from _models import zoo

from edgeseq.runtime import StreamingPredictor
from edgeseq.serve import ServeOptions
from edgeseq.serve._service import StreamService
from edgeseq.serve._ticks import FramesItem, Ticker

pytestmark = pytest.mark.timeout(120)
IDLE = 10.0  # seconds, on the test clock


class _Conn:
    """What the ticker needs of a connection: its record, its format, ``reply``."""

    def __init__(self, rec: object) -> None:
        self.rec, self.binary, self.replies = rec, False, []

    def reply(self, payload: str | bytes) -> None:
        self.replies.append(json.loads(payload))


class _Setup:
    """A service whose pool runs on a test clock, streams with local twins."""

    def __init__(self, inline_frames: int, max_streams: int) -> None:
        self.path = zoo.get("lstm")
        options = ServeOptions(port=0, state_dir=None, max_streams=max_streams, idle_timeout=IDLE)
        self.service = StreamService(self.path, options, lambda line: None)
        self.now = 0.0
        self.service.pool._clock = lambda: self.now  # the test decides who is idle
        self.service.start()
        self.service.ticker.close()
        self.service.ticker = Ticker(self.service, inline_frames)
        self.rng = np.random.default_rng(0)

    def stream(self) -> tuple[_Conn, StreamingPredictor]:
        rec = self.service.registry.create()[0]
        conn = _Conn(rec)
        self.service.registry.attach(rec, conn)  # a connection serves it: parked on eviction
        return conn, StreamingPredictor(self.path)

    def frames(self, t: int = 2) -> np.ndarray:
        return self.rng.standard_normal((t, 3)).astype(np.float32)

    def send(self, conn: _Conn, x: np.ndarray) -> None:
        self.service.ticker.add(FramesItem(conn, x, False, len(x), 0.0))  # type: ignore[arg-type]

    async def answered(self, *conns: _Conn, count: int = 1) -> None:
        """Until each of ``conns`` has ``count`` replies (bounded; the flush runs on this
        loop, or on the step thread with its answer posted back to this loop)."""
        for _ in range(20000):
            if all(len(c.replies) >= count for c in conns):
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"no reply: {[len(c.replies) for c in conns]} of {count}")

    async def close(self) -> None:
        await self.service.stop_streams()
        self.service.ticker.close()
        self.service.pool.shutdown()


def _outputs(reply: dict) -> np.ndarray:
    assert reply["type"] == "outputs", reply
    return np.asarray(reply["outputs"]["y"], np.float32)


def _same(reply: dict, local: np.ndarray) -> None:
    np.testing.assert_allclose(_outputs(reply), local, rtol=0, atol=1e-6)


@pytest.mark.parametrize("inline_frames", [256, 0], ids=["inline", "step-thread"])
def test_evicted_between_arrival_and_step_is_answered_from_its_own_state(
    inline_frames: int,
) -> None:
    async def run() -> None:
        s = _Setup(inline_frames, max_streams=4)
        try:
            (a, pa), (b, pb) = s.stream(), s.stream()
            for conn, local in ((a, pa), (b, pb)):  # both streams leave the initial state
                x = s.frames()
                s.send(conn, x)
                await s.answered(conn)
                _same(conn.replies[-1], local.step(x))
            s.now = IDLE / 2
            y = s.frames()
            s.send(b, y)
            await s.answered(b, count=2)
            _same(b.replies[-1], pb.step(y))
            old = a.rec.pool_id
            s.now = IDLE * 1.2  # a: idle past the timeout; b: not
            xa, xb = s.frames(3), s.frames(1)
            s.send(a, xa)
            s.send(b, xb)  # both queued: the flush is scheduled, not run yet
            assert s.service.pool.evict_idle() == [old]  # evicted before the step
            assert a.rec.pool_id is None and a.rec.parked is not None
            await s.answered(a, b, count=2)
            _same(a.replies[-1], pa.step(xa))  # reopened from its snapshot, exactly
            _same(b.replies[-1], pb.step(xb))  # the other stream: as if nothing happened
            assert a.rec.pool_id not in (None, old) and a.rec.seq == 2
        finally:
            await s.close()

    asyncio.run(run())


def test_a_step_on_the_stale_id_before_the_hook_parks_it_reopens_it() -> None:
    """The widest window: the pool has evicted the stream (another thread's sweep) but its
    hook has not yet parked it, so the flush steps the stale id. The gate opens the hook
    only once that step has been refused."""

    async def run() -> None:
        s = _Setup(256, max_streams=4)
        try:
            (a, pa), (b, pb) = s.stream(), s.stream()
            x = s.frames()
            s.send(a, x)
            await s.answered(a)
            _same(a.replies[-1], pa.step(x))
            old = a.rec.pool_id
            pool, registry = s.service.pool, s.service.registry
            gate, refused = threading.Event(), []
            hook = pool.on_evict

            def late_hook(pool_id, snap) -> None:  # the sweeping thread: parks late
                assert gate.wait(30), "the stale step never came"
                hook(pool_id, snap)

            step = pool.step

            def watched_step(frames):
                try:
                    return step(frames)
                except Exception:
                    if old in frames:
                        refused.append(old)
                        gate.set()  # the stale id was refused: let the hook park it
                    raise

            pool.on_evict, pool.step = late_hook, watched_step
            s.now = IDLE * 2  # both idle; b's message below counts as its use
            sweeper = threading.Thread(target=pool.evict_idle)
            sweeper.start()
            for _ in range(20000):  # until the sweep has closed a's row (bounded)
                if old not in pool._table.open:
                    break
                await asyncio.sleep(0.001)
            assert a.rec.pool_id == old  # evicted, not yet parked: the stale id
            xa = s.frames(3)
            s.send(a, xa)
            await s.answered(a, count=2)
            sweeper.join(30)
            assert refused and not sweeper.is_alive()
            _same(a.replies[-1], pa.step(xa))  # reopened from its snapshot, exactly
            assert a.rec.pool_id not in (None, old)
            xb = s.frames(1)  # b was evicted too (no message of its own): reopened
            s.send(b, xb)
            await s.answered(b)
            _same(b.replies[-1], pb.step(xb))
            assert registry.by_pool[a.rec.pool_id] is a.rec
        finally:
            await s.close()

    asyncio.run(run())


@pytest.mark.parametrize("inline_frames", [256, 0], ids=["inline", "step-thread"])
def test_evicted_and_its_slot_taken_gets_at_capacity_and_nothing_else_changes(
    inline_frames: int,
) -> None:
    async def run() -> None:
        s = _Setup(inline_frames, max_streams=2)
        try:
            (a, pa), (b, pb) = s.stream(), s.stream()
            x = s.frames()
            s.send(a, x)
            await s.answered(a)
            _same(a.replies[-1], pa.step(x))
            s.now = IDLE * 1.5  # both idle: a is evicted, b keeps its slot by its message
            xb, xa = s.frames(2), s.frames(3)
            s.send(b, xb)  # b's message first: stepped before a's in the same round
            s.send(a, xa)
            s.service.pool.evict_idle()
            assert a.rec.pool_id is None and b.rec.pool_id is None  # both parked
            c, _ = s.stream()  # a new stream takes a free slot ...
            s.service.registry.ensure_open(b.rec)  # ... and b reopens: the pool is full
            await s.answered(a, b)
            _same(b.replies[-1], pb.step(xb))  # b's answer is its own, not a's error
            err = a.replies[-1]
            assert err["type"] == "error" and err["reason"] == "at_capacity", err
            assert "max_streams=2" in err["message"] and "again later" in err["message"]
            assert a.rec.seq == 1 and a.rec.pool_id is None  # nothing applied
            s.service.registry.end(c.rec, "done")  # a slot frees: the same message runs
            s.send(a, xa)
            await s.answered(a, count=3)
            _same(a.replies[-1], pa.step(xa))  # as if the refused message never came
            assert a.rec.seq == 2
        finally:
            await s.close()

    asyncio.run(run())
