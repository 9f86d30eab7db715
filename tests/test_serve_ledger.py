"""The ownership rules of ``edgeseq serve --ray`` without Ray: the ledger's leases (grant,
hand-over, expiry, a restarted ledger's recovery, drain and stop orders), and two stream
services sharing one state folder through it — a stream moves exactly, and a server that
loses its lease stops saving and drops its streams."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from _models import zoo
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError

from edgeseq.client import protocol as P
from edgeseq.errors import StreamError
from edgeseq.runtime import StreamingPredictor
from edgeseq.serve import ServeOptions
from edgeseq.serve._ledger import Ledger
from edgeseq.serve._ownership import LeaseHolder
from edgeseq.serve._service import Answer, Plan, StreamService

pytestmark = pytest.mark.timeout(120)
TTL, BEAT = 0.8, 0.1
# the two-services test runs on real time (LeaseHolder has no clock to inject): its ttl
# must outlast a stalled event loop, or a live server's own lease lapses mid-hand-over
SERVICE_TTL = 2.5


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _until(check, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


class Clock:
    """The ledger's clock, moved only by the test: a stalled event loop (a loaded machine)
    cannot age a lease, so what a test asserts about the TTL holds however slowly it runs."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_free_stream_is_granted_and_a_held_one_waits_for_its_hand_over() -> None:
    async def main() -> None:
        ledger = Ledger(TTL, BEAT, clock=Clock())  # a never ages: only its release frees s1
        assert await ledger.claim("a", "s1", 1.0)
        assert await ledger.owner("s1") == "a"
        claim = asyncio.create_task(ledger.claim("b", "s1", 5.0))
        reply = await ledger.poll("a", None, [], [], {})  # registers a; the claim wants s1
        reply = await ledger.poll("a", reply["incarnation"], None, [], {})
        assert reply["wanted"] == ["s1"] and not claim.done()  # b waits: a still holds it
        await ledger.release("a", ["s1"])  # a saved it and let go
        assert await claim and await ledger.owner("s1") == "b"
        assert ledger.handovers == 1 and ledger.expired == 0

    _run(main())


def test_a_silent_holder_loses_its_streams_after_the_ttl_and_a_live_one_never() -> None:
    async def main() -> None:
        clock = Clock()
        ledger = Ledger(TTL, BEAT, clock=clock)
        assert await ledger.claim("a", "s1", 1.0)

        async def claim_while(replica: str, timeout: float, passes: float) -> bool:
            claim = asyncio.create_task(ledger.claim(replica, "s1", timeout))
            await asyncio.sleep(0)  # the claim took its deadline and waits
            clock.advance(passes)
            return await claim  # it looks again within ttl/4 (real time) and decides

        assert not await claim_while("b", TTL / 2, 0.6 * TTL)  # a is alive (0.6 ttl silent)
        assert await claim_while("b", 3 * TTL, 0.6 * TTL)  # a never polls: presumed dead
        assert ledger.expired == 1 and await ledger.owner("s1") == "b"

        async def keep_polling(replica: str, n: int) -> None:
            inc = None
            for _ in range(n):
                inc = (await ledger.poll(replica, inc, [] if inc is None else None))["incarnation"]
                clock.advance(TTL / 2)  # time passes, but never a ttl between two polls

        poller = asyncio.create_task(keep_polling("b", 10))  # b renews, ignores the want
        assert not await ledger.claim("c", "s1", 2 * TTL)
        await poller
        reply = await ledger.poll("a", None, ["s1"], [], {})  # a comes back claiming s1
        assert reply["lost"] == ["s1"]  # it was granted elsewhere: a must drop it

    _run(main())


def test_a_restarted_ledger_waits_one_ttl_for_holders_to_re_register() -> None:
    async def main() -> None:
        clock = Clock()
        ledger = Ledger(TTL, BEAT, restarted=True, clock=clock)
        assert await ledger.claim("b", "new", 0.1, fresh=True)  # a fresh id: at once
        waiting = asyncio.create_task(ledger.claim("b", "old", 5.0))
        reply = await ledger.poll("a", "stale", None, [], {})
        assert reply.get("resync")  # a must say what it holds
        await ledger.poll("a", None, ["old"], [], {})
        clock.advance(TTL / 2)
        await asyncio.sleep(TTL / 2)  # b's claim looks again (every ttl/4)
        assert not waiting.done()  # a re-registered "old": b waits for a's hand-over
        assert (await ledger.poll("a", ledger.incarnation, None, [], {}))["wanted"] == ["old"]
        await ledger.release("a", ["old"])
        clock.advance(TTL)  # the recovery ttl is over: the released stream is b's
        assert await waiting

    _run(main())


def test_drained_replicas_and_stop_all_are_told_to_stop() -> None:
    async def main() -> None:
        ledger = Ledger(3.0, BEAT, draining=lambda: {"a"})
        inc = (await ledger.poll("a", None, [], [], {}))["incarnation"]
        await ledger.poll("b", None, [], [], {})
        # the watcher asks the platform (in a thread) twice a second: wait until it did
        await _until(lambda: ledger.replicas["a"].stop)
        assert (await ledger.poll("a", inc, None, [], {}))["stop"]
        assert not (await ledger.poll("b", inc, None, [], {}))["stop"]
        stopping = asyncio.create_task(ledger.stop_all(5.0))
        for r in ("a", "b"):
            assert (await ledger.poll(r, inc, None, [], {"stopped": True}))["stop"]
        fleet = await stopping
        assert sorted(r["replica"] for r in fleet["replicas"]) == ["a", "b"]
        assert all(r["stopped"] for r in fleet["replicas"])

    _run(main())


# ---------------------------------------------------------------------- two services
class MemSocket:
    """An accepted WebSocket in memory: the test puts client messages, reads replies."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.closed: tuple[int, str] | None = None
        self.remote_address = ("memory", 0)
        self.transport = self

    def abort(self) -> None:
        self.closed = (1006, "aborted")

    def __aiter__(self) -> MemSocket:
        return self

    async def __anext__(self) -> str | bytes:
        msg = await self.inbox.get()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def send(self, msg: str | bytes) -> None:
        if self.closed:
            raise ConnectionClosedError(None, None)
        await self.outbox.put(msg)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.inbox.put_nowait(None)
        await self.outbox.put(None)

    async def reply(self) -> dict | None:
        msg = await asyncio.wait_for(self.outbox.get(), 20)
        return None if msg is None else json.loads(msg)


class Link:
    """The ledger as a replica reaches it; ``cut`` makes every call fail (a partition)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.cut = ledger, False

    def __getattr__(self, name: str):
        method = getattr(self.ledger, name)

        async def call(*args):
            if self.cut:
                raise ConnectionError("the ledger is unreachable")
            return await method(*args)

        return call


def _server(name: str, link: Link, state: Path) -> tuple[StreamService, LeaseHolder]:
    options = ServeOptions(state_dir=state, save_interval=0, idle_timeout=None)
    leases = LeaseHolder(name, link, SERVICE_TTL, 5.0, lambda line: None)
    service = StreamService(zoo.get("lstm"), options, lambda line: None, leases, leases.guard)
    service.start()
    leases.start(service, lambda detail: {})
    return service, leases


async def _open(service: StreamService, query: dict, headers: dict) -> tuple:
    plan = await service.admit(P.STREAM_PATH, query, Headers(headers), "test", [])
    if isinstance(plan, Answer):
        return plan, None, None
    assert isinstance(plan, Plan)
    ws = MemSocket()
    task = asyncio.create_task(service.serve_stream(ws, plan))
    return await ws.reply(), ws, task


def test_a_stream_moves_between_services_exactly_and_never_has_two_owners(tmp_path) -> None:
    xs = [np.full((k + 1, 3), 0.1 * k, np.float32) for k in range(6)]
    p = StreamingPredictor(zoo.get("lstm"))
    ref = [p.step(x) for x in xs]

    async def main() -> None:
        ledger = Ledger(SERVICE_TTL, BEAT)
        a, a_leases = _server("a", Link(ledger), tmp_path)
        b_link = Link(ledger)
        b, b_leases = _server("b", b_link, tmp_path)
        ready, ws, task = await _open(a, {}, {})
        for x, r in zip(xs[:3], ref):
            await ws.inbox.put(x.tobytes())
            y = np.asarray((await ws.reply())["outputs"]["y"], np.float32)
            np.testing.assert_array_equal(y, r)
        sid = ready["stream"]
        assert await ledger.owner(sid) == "a"
        # the client comes back on b while a still serves it: a hands it over, exactly
        query = {"resume": [sid], "acked": ["3"]}
        back, ws_b, task_b = await _open(b, query, {P.RESUME_HEADER: ready["resume_token"]})
        assert ws.closed is not None and ws.closed[0] == 4000  # a closed its connection
        assert back["resumed"] == "saved" and back["reason"] == "handover" and back["seq"] == 3
        notice = await ws_b.reply()
        assert notice == {**notice, "type": "resumed", "frames": 6, "seq": 3}
        assert await ledger.owner(sid) == "b" and sid not in a.registry.records
        # b continues from a's state: its replies equal one uninterrupted run
        for x, r in zip(xs[3:5], ref[3:5]):
            await ws_b.inbox.put(x.tobytes())
            y = np.asarray((await ws_b.reply())["outputs"]["y"], np.float32)
            np.testing.assert_array_equal(y, r)
        assert a.stepped[sid] == 1 + 2 + 3 and b.stepped[sid] == 4 + 5  # each its own part
        # b is cut off from the ledger: its own view of the lease lapses first, so its
        # saves are refused and it drops the stream (the client is told to resume) ...
        b_link.cut = True
        assert await ws_b.reply() is None and ws_b.closed[0] == 1012
        with pytest.raises(StreamError, match="lease lapsed"):
            b_leases.guard(sid)
        await _until(lambda: sid not in b.registry.records)
        # ... and only then may another server take it, from the last save (a's hand-over)
        assert await a_leases.acquire(sid)
        saved = a.registry.find(sid)
        assert saved.seq == 3 and saved.reason == "handover"
        for t in (task, task_b):
            await asyncio.wait_for(t, 10)
        for service, leases in ((a, a_leases), (b, b_leases)):
            leases.close()
            service.close()

    _run(main())
