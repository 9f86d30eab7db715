"""edgeseq serve, streaming: a real server on 127.0.0.1 in a subprocess, real clients.

Many concurrent connections with ragged frame counts give exactly what a local
StreamingPredictor gives per stream (and share batched calls); reset / snapshot /
restore; every bad message is refused with a reason while the connection and the
stream's state survive; binary replies; a token (int64) model.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from _models import zoo
from _serve import ServerProcess, http_get
from websockets.sync.client import connect

from edgeseq.client import StreamClient
from edgeseq.client import protocol as P
from edgeseq.errors import RemoteError
from edgeseq.runtime import Snapshot, StreamingPredictor

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lstm_server():
    with ServerProcess(zoo.get("lstm"), "--max-streams", "64") as server:
        yield server


def _chunks(seed: int, n: int) -> list[np.ndarray]:
    """Ragged messages: a single frame [3] or a chunk [T, 3] with T in 1..7."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(0, 8))
        shape = (3,) if t == 0 else (t, 3)
        out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def test_50_concurrent_connections_equal_local_predictors(lstm_server: ServerProcess) -> None:
    path = zoo.get("lstm")
    n_streams, n_messages = 50, 12
    got: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n_streams)

    def run(i: int) -> None:
        try:
            with StreamClient(lstm_server.url) as client:
                start.wait(30)
                got[i] = [client.step(x) for x in _chunks(i, n_messages + i % 5)]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(got) == n_streams
    for i in range(n_streams):
        local = StreamingPredictor(path)
        for x, y in zip(_chunks(i, n_messages + i % 5), got[i]):
            ref = local.step(x)
            assert y.shape == ref.shape and y.dtype == ref.dtype
            np.testing.assert_array_equal(y, ref)  # LSTM rows are bit-identical in a batch
    # concurrent streams shared onnxruntime calls
    _, _, text = http_get(lstm_server.http + P.METRICS_PATH)
    counts = _histogram(text, "edgeseq_batch_streams")
    assert counts["+Inf"] > 0 and counts["1.0"] < counts["+Inf"], counts


def _histogram(text: str, name: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        if family.name == name:
            return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    raise AssertionError(f"{name} not in /metrics")


def test_reset_snapshot_restore_match_a_local_predictor(lstm_server: ServerProcess) -> None:
    path = zoo.get("lstm")
    local = StreamingPredictor(path)
    xs = _chunks(7, 6)
    with StreamClient(lstm_server.url) as client:
        for x in xs[:3]:
            np.testing.assert_array_equal(client.step(x), local.step(x))
        data = client.snapshot()
        snap = Snapshot.from_bytes(data)  # the runtime's own format
        assert snap.frames_seen == local.frames_seen
        for k, v in local.snapshot().states.items():  # the graph's pairs, both
            np.testing.assert_array_equal(snap.states[k], v)
        after = [client.step(x) for x in xs[3:]]
        client.reset()
        local.reset()
        np.testing.assert_array_equal(client.step(xs[0]), local.step(xs[0]))
        client.restore(data)  # back to the snapshot: the same continuation again
        for x, y in zip(xs[3:], after):
            np.testing.assert_array_equal(client.step(x), y)
        # a snapshot taken remotely continues in a local predictor, and back
        other = StreamingPredictor(path)
        other.restore(Snapshot.from_bytes(client.snapshot()))
        x = xs[1]
        np.testing.assert_array_equal(other.step(x), client.step(x))
        client.restore(other.snapshot().to_bytes())
        np.testing.assert_array_equal(other.step(x), client.step(x))


def _raw(url: str) -> tuple[object, dict]:
    ws = connect(url, compression=None, legacy=True)
    return ws, json.loads(ws.recv(timeout=10))


BAD = [
    ("bad_size", b"\x00" * 13),
    ("bad_size", b""),
    ("non_finite", np.array([[1, np.nan, 0]], "<f4").tobytes()),
    ("non_finite", np.array([[1, 0, 0], [0, np.inf, 0]], "<f4").tobytes()),
    ("too_many_frames", np.zeros((9, 3), "<f4").tobytes()),
    ("unknown_type", '{"type": "explode"}'),
    ("unknown_type", '{"type": "ready"}'),  # a server's message, not a client's
    ("bad_json", "{not json"),
    ("bad_json", "[1, 2]"),
    ("bad_json", '{"type": 3}'),
    ("bad_snapshot", '{"type": "restore", "data": "%%% not base64"}'),
    ("bad_snapshot", '{"type": "restore", "data": "AAAA"}'),
    ("bad_snapshot", '{"type": "restore"}'),
]


def test_every_bad_message_is_refused_and_the_stream_survives(tmp_path) -> None:
    path = zoo.get("lstm")
    gru_snapshot = StreamingPredictor(zoo.get("gru")).snapshot().to_bytes()
    bad = [*BAD, ("bad_snapshot", P.encode(P.Restore(P.b64encode(gru_snapshot))))]
    local = StreamingPredictor(path)
    rng = np.random.default_rng(3)
    with ServerProcess(path, "--max-frames-per-message", "8") as server:
        ws, ready = _raw(server.url)
        assert ready["type"] == "ready" and ready["features"] == 3 and ready["max_frames"] == 8
        assert ready["dtype"] == "float32" and ready["window"] is None
        assert ready["outputs"][0]["shape"] == [2]
        assert len(ready["stream"]) >= 22 and len(ready["resume_token"]) >= 43  # >= 128 bits
        for reason, message in bad:
            x = rng.standard_normal((2, 3)).astype(np.float32)
            ws.send(x.tobytes())
            reply = json.loads(ws.recv(timeout=10))
            np.testing.assert_array_equal(
                np.asarray(reply["outputs"]["y"], np.float32), local.step(x)
            )
            ws.send(message)
            err = json.loads(ws.recv(timeout=10))
            assert err["type"] == "error" and err["reason"] == reason, (reason, err)
            assert len(err["message"]) > 20
        x = rng.standard_normal(3).astype(np.float32)
        ws.send(x.tobytes())  # the state is exactly what the good messages made it
        reply = json.loads(ws.recv(timeout=10))
        np.testing.assert_array_equal(
            np.asarray(reply["outputs"]["y"][0], np.float32), local.step(x)
        )
        ws.send("Done")  # sherpa-onnx's end marker
        end = json.loads(ws.recv(timeout=10))
        assert end == {"type": "end", "frames": local.frames_seen, "seq": len(bad) + 1}
        ws.close()
        _, _, text = http_get(server.http + P.METRICS_PATH)
        for reason in {r for r, _ in bad}:
            assert f'edgeseq_refused_total{{reason="{reason}"}}' in text, reason
    assert server.proc.returncode == 0


def test_binary_replies_and_pipelined_messages(lstm_server: ServerProcess) -> None:
    """?format=binary: float32 rows of the first output; many messages in flight at once
    come back in the order they were sent."""
    local = StreamingPredictor(zoo.get("lstm"))
    xs = _chunks(11, 40)
    ws = connect(lstm_server.url + "?format=binary", compression=None, legacy=True)
    json.loads(ws.recv(timeout=10))
    for x in xs:  # send all before reading any reply
        ws.send(np.atleast_2d(x).tobytes())
    for x in xs:
        y = np.frombuffer(ws.recv(timeout=10), "<f4").reshape(-1, 2)
        np.testing.assert_array_equal(y, np.atleast_2d(local.step(x)))
    ws.close()


def test_token_model_streams_int64_ids() -> None:
    path = zoo.get("char_lm")
    local = StreamingPredictor(path)
    ids = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.int64)
    with ServerProcess(path) as server, StreamClient(server.url) as client:
        assert client.ready.dtype == "int64" and client.ready.features == 1
        assert client.ready.frame_shape == []
        np.testing.assert_array_equal(client.step(ids[0]), local.step(ids[0]))
        np.testing.assert_array_equal(client.step(ids[1:]), local.step(ids[1:]))
        with pytest.raises(RemoteError, match=r"vocabulary|token ids") as info:
            client.step(np.array([10_000]))
        assert info.value.reason == "bad_frames"
        np.testing.assert_array_equal(client.step(ids[:3]), local.step(ids[:3]))
        assert client.contract.preprocessing.vocab == local.contract.preprocessing.vocab


def test_stream_command_prints_the_same_lines_remotely(
    lstm_server: ServerProcess, tmp_path
) -> None:
    from click.testing import CliRunner

    from edgeseq.cli import main

    rng = np.random.default_rng(12)
    csv = tmp_path / "frames.csv"
    rows = ["a,b,c"] + [",".join(f"{v:.5f}" for v in rng.standard_normal(3)) for _ in range(25)]
    csv.write_text("\n".join(rows) + "\n")
    local = CliRunner().invoke(main, ["stream", str(zoo.get("lstm")), "-i", str(csv)])
    remote = CliRunner().invoke(main, ["stream", "--url", lstm_server.url, "-i", str(csv)])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    lines = [ln for ln in local.output.splitlines() if not ln.startswith("#")]
    assert len(lines) == 25
    assert [ln for ln in remote.output.splitlines() if not ln.startswith("#")] == lines
    both = CliRunner().invoke(main, ["stream", str(zoo.get("lstm")), "--url", lstm_server.url])
    assert both.exit_code != 0 and "either MODEL" in both.output
