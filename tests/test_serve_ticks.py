"""edgeseq serve's per-tick batching (``_ticks``) and its own WebSocket framing (``_socket``).

In process: messages of many streams handed to the ticker in one tick run as rounds of
one ``StreamPool.step`` each, with outputs identical to local predictors whatever the mix
of frame counts; a message the pool refuses gets its error in its place and changes no
stream. Over a real socket: many messages of one connection arriving in one read, even before
``ready``, are answered in order (frames, errors, a reset between, past ``max_inflight``);
fragmented messages, pings and 16/64-bit frame lengths still work.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from _models import zoo
from _serve import ServerProcess
from websockets.sync.client import connect

from edgeseq.client import protocol as P
from edgeseq.runtime import StreamingPredictor
from edgeseq.serve import ServeOptions
from edgeseq.serve._service import StreamService
from edgeseq.serve._ticks import FramesItem, Ticker

pytestmark = pytest.mark.timeout(300)


class _Conn:
    """What the ticker needs of a connection: its record, its format, ``reply``."""

    def __init__(self, rec: object) -> None:
        self.rec, self.binary, self.replies = rec, False, []

    def reply(self, payload: str | bytes) -> None:
        self.replies.append(json.loads(payload))


def _frames(rng: np.random.Generator, t: int) -> np.ndarray:
    """One frame [3] (t == 0) or a chunk [t, 3]."""
    return rng.standard_normal((3,) if t == 0 else (t, 3)).astype(np.float32)


def _item(conn: _Conn, x: np.ndarray) -> FramesItem:
    single = x.ndim == 1
    return FramesItem(conn, x, single, 1 if single else len(x), 0.0)  # type: ignore[arg-type]


def _rows(reply: dict) -> np.ndarray:
    return np.asarray(reply["outputs"]["y"], np.float32)


async def _run_ticks(inline_frames: int, max_batch: int | None) -> None:
    path = zoo.get("lstm")
    options = ServeOptions(port=0, state_dir=None, max_batch=max_batch)
    service = StreamService(path, options, lambda line: None)
    calls: list[int] = []
    service.pool._on_batch = lambda streams, frames: calls.append(streams)
    service.start()
    service.ticker.close()
    service.ticker = ticker = Ticker(service, inline_frames)
    try:
        recs = [service.registry.create()[0] for _ in range(5)]
        conns = [_Conn(r) for r in recs]
        local = [StreamingPredictor(path) for _ in recs]
        rng = np.random.default_rng(0)
        # per stream: a ragged list of messages; stream 2's third message is refused by the
        # pool (a frame of 5 values for a 3-feature model; the wire checks cannot see it)
        plans = [[int(t) for t in rng.integers(0, 5, 3 + i)] for i in range(len(recs))]
        messages = [[_frames(rng, t) for t in plan] for plan in plans]
        messages[2][2] = np.zeros(5, np.float32)
        messages[4][1] = np.array([[0.0, np.nan, 1.0]], np.float32)  # NaN, past the wire
        expected: list[list[object]] = [[] for _ in recs]
        for i, msgs in enumerate(messages):
            for x in msgs:
                if x.shape[-1] != 3:
                    expected[i].append("bad_frames")
                elif not np.isfinite(x).all():
                    expected[i].append("non_finite")
                else:
                    expected[i].append(local[i].step(x))
        # every message in one tick, interleaved across streams as a loop would read them
        most = max(len(m) for m in messages)
        for k in range(most):
            for conn, msgs in zip(conns, messages):
                if k < len(msgs):
                    ticker.add(_item(conn, msgs[k]))
        total = sum(len(m) for m in messages)
        for _ in range(2000):
            if sum(len(c.replies) for c in conns) == total:
                break
            await asyncio.sleep(0.005)
        for i, conn in enumerate(conns):
            assert len(conn.replies) == len(expected[i])
            seq = 0
            for reply, ref in zip(conn.replies, expected[i]):
                if isinstance(ref, str):
                    assert reply["type"] == "error" and reply["reason"] == ref, reply
                    continue
                seq += 1
                assert reply["type"] == "outputs" and reply["seq"] == seq, reply
                want = np.asarray(ref).reshape(-1, 2)
                np.testing.assert_array_equal(_rows(reply), want)
            assert recs[i].seq == seq
        assert max(calls) <= (max_batch or len(recs)) and len(calls) < total  # batched
        # the refused messages changed nothing: one more step per stream still agrees
        for conn, pred in zip(conns, local):
            x = _frames(rng, 2)
            before = len(conn.replies)
            ticker.add(_item(conn, x))
            ref = pred.step(x)
            for _ in range(2000):
                if len(conn.replies) > before:
                    break
                await asyncio.sleep(0.005)
            np.testing.assert_array_equal(_rows(conn.replies[-1]), np.asarray(ref))
    finally:
        service.close()


@pytest.mark.parametrize(
    ("inline_frames", "max_batch"),
    [(0, None), (1 << 30, None), (1 << 30, 2)],
    ids=["step-thread", "inline", "max-batch-2"],
)
def test_one_tick_of_ragged_streams_equals_local_predictors(
    inline_frames: int, max_batch: int | None
) -> None:
    asyncio.run(_run_ticks(inline_frames, max_batch))


@pytest.fixture(scope="module")
def server():
    with ServerProcess(zoo.get("lstm"), "--max-streams", "8", "--max-inflight", "4") as s:
        yield s


def _burst(ws: object, messages: list[str | bytes]) -> None:
    """Frame every message with the client's protocol and send them in ONE write, so the
    server reads them together (one tick)."""
    for m in messages:
        if isinstance(m, str):
            ws.protocol.send_text(m.encode())  # type: ignore[attr-defined]
        else:
            ws.protocol.send_binary(m)  # type: ignore[attr-defined]
    data = b"".join(ws.protocol.data_to_send())  # type: ignore[attr-defined]
    ws.socket.sendall(data)  # type: ignore[attr-defined]


def test_a_burst_on_one_connection_is_answered_in_order(server: ServerProcess) -> None:
    path = zoo.get("lstm")
    local = StreamingPredictor(path)
    rng = np.random.default_rng(1)
    xs = [_frames(rng, int(t)) for t in rng.integers(1, 4, 30)]
    nan = np.array([[0.0, np.inf, 0.0]], "<f4").tobytes()
    burst: list[str | bytes] = []
    expected: list[object] = []
    for k, x in enumerate(xs):  # 30 frames messages (max-inflight 4), errors and a reset
        burst.append(x.astype("<f4").tobytes())
        expected.append(local.step(x))
        if k == 9:
            burst += [nan, b"\x00" * 5, '{"type": "reset"}']
            expected += ["non_finite", "bad_size", "reset"]
            local.reset()
    with connect(server.url, compression=None) as ws:
        _burst(ws, burst)  # before `ready` arrives: kept until the stream is attached
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        seq = 0
        for want in expected:
            reply = json.loads(ws.recv(timeout=30))
            if isinstance(want, str) and want != "reset":
                assert reply["type"] == "error" and reply["reason"] == want, reply
                continue
            seq += 1
            assert reply["seq"] == seq, reply
            if isinstance(want, str):
                assert reply["type"] == "reset"
                continue
            np.testing.assert_array_equal(_rows(reply), np.asarray(want).reshape(-1, 2))


def test_fragments_pings_and_long_frames_still_work(server: ServerProcess) -> None:
    local = StreamingPredictor(zoo.get("lstm"))
    rng = np.random.default_rng(2)
    with connect(server.url, compression=None, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        x = _frames(rng, 4)
        data = x.astype("<f4").tobytes()
        ws.send([data[:10], data[10:30], data[30:]])  # one message in three fragments
        np.testing.assert_array_equal(_rows(json.loads(ws.recv(timeout=10))), local.step(x))
        assert ws.ping().wait(10)  # websockets' own protocol answers pings
        ws.send(['{"type": ', '"snapshot"}'])  # a fragmented text message
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        big = _frames(rng, 600)  # 7,200 bytes: a 16-bit length, several reads
        ws.send(big.astype("<f4").tobytes())
        np.testing.assert_array_equal(_rows(json.loads(ws.recv(timeout=30))), local.step(big))
        huge = np.zeros((7000, 3), "<f4").tobytes()  # 84,000 bytes: a 64-bit length
        ws.send(huge)
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "error" and reply["reason"] == "too_many_frames", reply
        x = _frames(rng, 0)
        ws.send(x.astype("<f4").tobytes())
        np.testing.assert_array_equal(
            _rows(json.loads(ws.recv(timeout=10))), np.asarray(local.step(x))[None]
        )
        ws.send(P.encode(P.End()))
        assert json.loads(ws.recv(timeout=10))["type"] == "end"


@pytest.mark.parametrize("model", ["lstm", "scaled", "char_lm"])
def test_reply_text_is_exactly_the_protocol_encoder(model: str) -> None:
    from edgeseq.runtime import StreamPool
    from edgeseq.serve._frames import WireFormat

    pool = StreamPool(zoo.get(model), max_streams=2)
    wire = WireFormat(pool.engine)
    sid = pool.open()
    rng = np.random.default_rng(3)
    per_frame = wire.trailing or ()
    for k, special in enumerate([None, np.nan, np.inf, -np.inf, 1e-30, -0.0, 3e38]):
        for t in (0, 3):  # one frame, a chunk
            shape = (*((t,) if t else ()), *per_frame)
            if wire.dtype == "int64":
                x = rng.integers(0, 3, shape).astype(np.int64)
            else:
                x = rng.standard_normal(shape).astype(np.float32)
            out = pool.step({sid: x})[sid]
            outs = out if isinstance(out, dict) else {wire._outs[0][0]: out}
            outs = {name: np.array(v) for name, v in outs.items()}
            if special is not None:
                first = next(iter(outs.values()))
                first.reshape(-1)[0] = special
            rows = wire.rows(outs, t == 0)
            body = {name: r.tolist() for name, r in rows.items()}
            for saved in (None, k):
                want = P.outputs_text(max(t, 1), body, 7 + k, saved)
                assert wire.text(outs, t == 0, max(t, 1), 7 + k, saved) == want
    pool.shutdown()


def test_step_seconds_reads_as_a_prometheus_histogram() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from edgeseq.serve._metrics import _LATENCY, StepSeconds

    doc = "Seconds from a frames message arriving to its reply being sent."
    ref_registry, registry = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("edgeseq_step_seconds", doc, buckets=_LATENCY, registry=ref_registry)
    ours = StepSeconds("edgeseq_step_seconds", doc, _LATENCY)
    registry.register(ours)
    values = np.array([1e-4, 5e-4, 5.000001e-4, 1e-3, 3e-3, 0.5, 2.5, 3.0, 100.0])
    for v in values:
        ref.observe(v)
    ours.observe_many(values[:4])  # two batches
    ours.observe_many(values[4:])

    def lines(r: CollectorRegistry) -> list[str]:
        text = generate_latest(r).decode().splitlines()
        return [x for x in text if "_created" not in x and "_sum" not in x]

    assert lines(registry) == lines(ref_registry)
    assert ours.sum == pytest.approx(values.sum())
