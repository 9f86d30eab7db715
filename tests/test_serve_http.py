"""edgeseq serve, the HTTP side and the handshake: /healthz, /v1/model, /metrics, the page,
tokens (401), resume secrets (403), unknown streams (404), capacity (503)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _models import zoo
from _serve import ServerProcess, http_get
from websockets.sync.client import connect

from edgeseq.client import StreamClient
from edgeseq.client import protocol as P
from edgeseq.contract import Contract
from edgeseq.errors import RemoteError
from edgeseq.runtime import StreamingPredictor

pytestmark = pytest.mark.timeout(300)
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory):
    tokens = tmp_path_factory.mktemp("tok") / "tokens.txt"
    tokens.write_text(f"# accepted tokens\n{TOKEN}\nanother-token\n")
    with ServerProcess(zoo.get("gru"), "--token-file", str(tokens), "--max-streams", "2") as s:
        yield s


def test_health_model_metrics_and_page(guarded: ServerProcess) -> None:
    assert http_get(guarded.http + "/healthz")[:1] == (200,)
    status, ctype, body = http_get(guarded.http + "/")
    assert status == 200 and ctype.startswith("text/html") and "<canvas" in body
    status, ctype, body = http_get(guarded.http + P.MODEL_PATH, TOKEN)
    assert status == 200 and ctype == "application/json"
    assert Contract.from_json(body) == StreamingPredictor(zoo.get("gru")).contract
    with StreamClient(guarded.url, TOKEN) as client:
        client.step(np.ones((5, 3), np.float32))
        status, ctype, text = http_get(guarded.http + P.METRICS_PATH, TOKEN)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "edgeseq_open_streams",
        "edgeseq_connections",
        "edgeseq_frames",
        "edgeseq_batch_streams",
        "edgeseq_step_seconds",
        "edgeseq_refused",
    ):
        assert name in families, name
    frames = [s.value for s in families["edgeseq_frames"].samples if s.name.endswith("_total")]
    assert frames[0] >= 5
    assert http_get(guarded.http + "/nope")[0] == 404


def test_tokens_401(guarded: ServerProcess) -> None:
    for path in (P.MODEL_PATH, P.METRICS_PATH):
        assert http_get(guarded.http + path)[0] == 401
        assert http_get(guarded.http + path, "wrong")[0] == 401
    for token in (None, "wrong", TOKEN + "x"):
        with pytest.raises(RemoteError, match="HTTP 401") as info:
            StreamClient(guarded.url, token)
        assert info.value.status == 401
    with StreamClient(guarded.url, "another-token") as client:  # every listed token works
        assert client.ready.features == 3
    # a browser cannot set headers: the token rides in a subprotocol
    sub = [P.SUBPROTOCOL, P.token_subprotocol(TOKEN)]
    with connect(guarded.url, subprotocols=sub, compression=None) as ws:
        assert ws.subprotocol == P.SUBPROTOCOL
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send("Done")  # else the stream waits, detached, for a resume
        assert json.loads(ws.recv(timeout=10))["type"] == "end"


def test_resume_403_404_and_capacity_503(guarded: ServerProcess) -> None:
    a = StreamClient(guarded.url, TOKEN, resume_within=0)
    b = StreamClient(guarded.url, TOKEN, resume_within=0)
    with pytest.raises(RemoteError, match=r"HTTP 503.*capacity") as info:
        StreamClient(guarded.url, TOKEN)
    assert info.value.status == 503
    with pytest.raises(RemoteError, match="HTTP 403") as info:
        StreamClient(guarded.url, TOKEN, stream=a.stream_id, resume_token=b.resume_token)
    with pytest.raises(RemoteError, match="HTTP 404") as info:
        StreamClient(guarded.url, TOKEN, stream="A" * 22, resume_token="whatever")
    with pytest.raises(RemoteError, match="HTTP 404"):  # never a path
        StreamClient(guarded.url, TOKEN, stream="../../etc/passwd", resume_token="x")
    with pytest.raises(RemoteError, match="HTTP 401"):  # a resume needs the token too
        StreamClient(guarded.url, None, stream=a.stream_id, resume_token=a.resume_token)
    a.step(np.ones(3, np.float32))
    assert a.close() == 1
    with pytest.raises(RemoteError, match=r"HTTP 404.*ended"):
        StreamClient(guarded.url, TOKEN, stream=a.stream_id, resume_token=a.resume_token)
    with StreamClient(guarded.url, TOKEN) as c:  # a slot is free again
        assert c.ready.seq == 0
    b.close()
    _, _, text = http_get(guarded.http + P.METRICS_PATH, TOKEN)
    for reason in ("unauthorized", "forbidden", "not_found", "unavailable"):
        assert f'edgeseq_refused_total{{reason="{reason}"}}' in text, reason


def test_bad_command_lines_print_one_line(tmp_path) -> None:
    cli = "from edgeseq.cli import main; main()"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    cases = [
        (["serve", str(tmp_path / "missing.onnx")], "missing.onnx"),
        (["serve", str(zoo.get("lstm")), "--token-file", str(empty)], "holds no token"),
        (["serve", str(zoo.get("linear"))], "Error:"),
    ]
    for args, expected in cases:
        r = subprocess.run(
            [sys.executable, "-c", cli, *args], capture_output=True, text=True, timeout=120
        )
        assert r.returncode != 0, args
        assert expected in r.stderr, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
