"""``edgeseq serve --ray`` on a real local Ray cluster (127.0.0.1, its own temporary folder),
started once for this module by the command itself and stopped by SIGTERM at the end —
or by PID, cluster processes included, if anything fails.

Every check is exact: each stream's outputs equal a local predictor's, through bursts of
pipelined messages, a replica killed mid-stream, and the fleet re-sized 2 → 3 → 1.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from _models import zoo
from _ray import FleetProcess, cluster_pids, need_ray
from _serve import http_get

from edgeseq.client import StreamClient
from edgeseq.client import protocol as P
from edgeseq.contract import Contract
from edgeseq.runtime import Snapshot, StreamingPredictor

need_ray()
pytestmark = pytest.mark.timeout(600)
LEASE = "5"  # seconds: how long a killed replica's streams wait before resuming elsewhere
# (the default; a starved replica on a loaded machine keeps its leases for that long)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("ray-state")
    f = FleetProcess(
        zoo.get("lstm"),
        "--replicas", "2", "--replica-cpus", "0.25", "--state-dir", str(state),
        "--save-interval", "0.5", "--lease-seconds", LEASE, "--idle-timeout", "3600",
    )  # fmt: skip
    f.state = state  # type: ignore[attr-defined]
    with f:
        yield f
    assert not cluster_pids(f.folder), "a process of the cluster outlived the test"


def _ragged(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, 6)), 3)).astype(np.float32) for _ in range(n)]


def _reference(xs: list[np.ndarray]) -> list[np.ndarray]:
    p = StreamingPredictor(zoo.get("lstm"))
    return [p.step(x) for x in xs]


async def _bursty_stream(url: str, seed: int) -> tuple[str, int]:
    """One stream sending its messages in bursts (up to 8 in flight), checking each reply."""
    from websockets.asyncio.client import connect

    xs = _ragged(seed, 24)
    ref = _reference(xs)
    rng = np.random.default_rng(1000 + seed)
    async with connect(url, compression=None, max_size=None, open_timeout=120) as ws:
        ready = json.loads(await ws.recv())
        i = 0
        while i < len(xs):
            burst = xs[i : i + int(rng.integers(1, 9))]
            for x in burst:
                await ws.send(x.tobytes())
            for k in range(len(burst)):
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                assert reply["seq"] == i + k + 1
                y = np.asarray(reply["outputs"]["y"], np.float32)
                np.testing.assert_array_equal(y, ref[i + k])
            i += len(burst)
        await ws.send('{"type": "end"}')
        end = json.loads(await ws.recv())
    assert end["frames"] == sum(len(x) for x in xs)
    return ready["stream"], end["frames"]


def test_40_bursty_ragged_streams_each_owned_by_one_replica(fleet: FleetProcess) -> None:
    fleet.wait_replicas(2)

    async def main() -> list[tuple[str, int]]:
        return await asyncio.gather(*(_bursty_stream(fleet.url, s) for s in range(40)))

    done = asyncio.run(main())
    view = fleet.fleet(streams=True)
    seen: dict[str, list[tuple[str, int]]] = {}
    for r in view["replicas"]:
        for sid, frames in r["stepped"].items():
            seen.setdefault(sid, []).append((r["replica"], frames))
    for sid, frames in done:  # the replicas' own counters: one replica stepped every frame
        assert len(seen[sid]) == 1 and seen[sid][0][1] == frames, (sid, seen[sid])
    used = {seen[sid][0][0] for sid, _ in done}
    assert len(used) == 2, f"the proxy sent all 40 streams to {used}"
    status, ctype, text = http_get(fleet.http + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    per_replica = {
        line.split('replica="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("edgeseq_frames_total{")
    }
    assert set(per_replica) == {r["replica"] for r in view["replicas"]}
    assert sum(per_replica.values()) >= sum(f for _, f in done)
    assert "edgeseq_fleet_replicas 2.0" in text


def test_the_same_endpoints_and_refusals_through_serve_s_proxy(fleet: FleetProcess) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    assert http_get(fleet.http + "/healthz")[:1] == (200,)
    status, ctype, body = http_get(fleet.http + "/v1/model")
    assert status == 200 and ctype == "application/json"
    assert Contract.from_json(body) == StreamingPredictor(zoo.get("lstm")).contract
    status, ctype, body = http_get(fleet.http + "/")
    assert status == 200 and ctype.startswith("text/html") and "<canvas" in body
    assert http_get(fleet.http + "/nope")[0] == 404
    assert http_get(fleet.http + P.STREAM_PATH)[0] == 426  # a plain GET of the stream path
    with StreamClient(fleet.url) as c:  # a refused handshake keeps its HTTP status
        c.step(np.ones((2, 3), np.float32))
        for headers, status in (({P.RESUME_HEADER: "wrong"}, 403), ({}, 400)):
            with pytest.raises(InvalidStatus) as info:
                connect(f"{fleet.url}?resume={c.stream_id}", additional_headers=headers)
            assert info.value.response.status_code == status
        with pytest.raises(InvalidStatus) as info:
            connect(f"{fleet.url}?resume={'x' * 22}", additional_headers={P.RESUME_HEADER: "t"})
        assert info.value.response.status_code == 404


def test_the_proxy_port_is_held_from_its_choice_until_the_fleet_stops() -> None:
    """Serve's proxy binds its port after the cluster started, seconds after the port was
    chosen: no other program may take it meanwhile, yet Serve's own proxy code binds it and
    answers on it. (Without the hold, the bind below takes the port and the test fails.)"""
    from ray.serve._private.http_util import start_asgi_http_server
    from ray.serve._private.proxy import SOCKET_REUSE_PORT_ENABLED
    from ray.serve.config import HTTPOptions

    from edgeseq.serve import RayFleet, ServeOptions

    async def app(scope, receive, send) -> None:  # a stand-in for Serve's proxy app
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"proxy"})

    async def proxy_answers(port: int) -> tuple[int, str, str]:
        loop = asyncio.get_running_loop()
        options = HTTPOptions(host="127.0.0.1", port=port)
        task, server = await start_asgi_http_server(
            app, options, event_loop=loop, enable_so_reuseport=SOCKET_REUSE_PORT_ENABLED
        )
        try:
            for _ in range(200):  # bounded: until uvicorn serves on the socket
                if server.started:
                    break
                await asyncio.sleep(0.05)
            return await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/")
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)

    def another_server(port: int) -> None:  # binds as servers do (past TIME_WAIT)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))

    fleet = RayFleet(zoo.get("lstm"), ServeOptions(host="127.0.0.1", port=0))
    try:
        with pytest.raises(OSError) as taken:
            another_server(fleet.port)  # while Ray starts
        assert taken.value.errno == errno.EADDRINUSE
        status, _, body = asyncio.run(proxy_answers(fleet.port))
        assert (status, body) == (200, "proxy")
    finally:
        assert fleet.stop() == 0  # never started: it lets the port go and removes its folder
    another_server(fleet.port)


def test_bad_ray_command_lines_print_one_line(tmp_path: Path) -> None:
    cli = [sys.executable, "-c", "from edgeseq.cli import main; main()", "serve"]
    model = str(zoo.get("lstm"))
    cases = [
        ([model, "--replicas", "3"], "works with --ray only"),
        ([model, "--ray", "--ray-address", "auto"], "needs --state-dir"),
        ([model, "--ray", "--replica-cpus", "100000"], "need 200000 CPUs"),
        ([str(tmp_path / "none.onnx"), "--ray"], "not found"),
    ]
    before = set(Path("/tmp").glob("edgeseq-ray-*"))
    for args, message in cases:
        out = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)
        last = out.stderr.strip().splitlines()[-1]
        assert out.returncode != 0 and last.startswith("Error:") and message in last, out.stderr
        assert "Traceback" not in out.stderr
    assert set(Path("/tmp").glob("edgeseq-ray-*")) <= before, "a refused command left a folder"


class _Streams:
    """``n`` StreamClients stepping one ragged sequence in threads until :meth:`finish`."""

    def __init__(self, url: str, n: int, pause: float, most: int = 8000) -> None:
        self.xs = _ragged(7, most)
        self.ref = _reference(self.xs)
        self.clients = [StreamClient(url, resume_within=120) for _ in range(n)]
        self.got: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i, pause)) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i: int, pause: float) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ResumeWarning: checked via .resumes
                for x in self.xs:
                    if self.stop.is_set():
                        return
                    self.got[i].append(self.clients[i].step(x))
                    time.sleep(pause)
        except BaseException as exc:
            self.errors.append(exc)

    @property
    def done(self) -> int:
        return min(len(g) for g in self.got)

    def wait(self, each: int, timeout: float = 180.0) -> None:
        """Until every stream has had ``each`` replies."""
        deadline = time.monotonic() + timeout
        while self.done < each:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"streams stuck at {self.done} replies"
            time.sleep(0.05)

    def finish(self) -> None:
        """Stop; every reply equals the local run, every stream's frames were counted."""
        assert self.done < len(self.xs), "a stream ran out of frames before the test ended"
        self.stop.set()
        for t in self.threads:
            t.join(300)
        assert not self.errors, self.errors
        for c, got in zip(self.clients, self.got):
            for y, r in zip(got, self.ref):
                np.testing.assert_array_equal(y, r)
            assert c.close() == sum(len(x) for x in self.xs[: len(got)])


def _owners(fleet: FleetProcess, clients: list[StreamClient]) -> dict[str, str]:
    """Stream id → the replica that stepped it, from the replicas' own counters (they reach
    the ledger in polls: wait until every client's stream is there)."""
    owner: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while True:
        for r in fleet.fleet(streams=True)["replicas"]:
            owner.update({sid: r["replica"] for sid in r["stepped"]})
        owner = {c.stream_id: owner[c.stream_id] for c in clients if c.stream_id in owner}
        if len(owner) == len(clients):
            return owner
        assert time.monotonic() < deadline, owner
        time.sleep(0.2)


def test_a_killed_replica_s_streams_resume_elsewhere_exactly(fleet: FleetProcess) -> None:
    fleet.wait_replicas(2)
    streams = _Streams(fleet.url, 6, 0.01)
    streams.wait(20)
    owner = _owners(fleet, streams.clients)
    victim = max(fleet.fleet()["replicas"], key=lambda r: list(owner.values()).count(r["replica"]))
    lost = {s for s, r in owner.items() if r == victim["replica"]}
    assert lost
    os.kill(victim["pid"], signal.SIGKILL)  # no chance to save: streams resume from saves
    moved = []
    deadline = time.monotonic() + 120
    while len(moved) < len(lost) and time.monotonic() < deadline:
        moved = [c for c in streams.clients if c.resumes]
        time.sleep(0.1)
    streams.wait(streams.done + 20)
    streams.finish()
    assert {c.stream_id for c in moved} == lost  # exactly the dead replica's streams moved
    for c in moved:
        info = c.resumes[-1]
        assert info.kind == "saved" and info.reason in ("periodic", "opened")
        # the `resumed` notice named the frame the new replica started from; the client
        # resent every message it had sent after it (or got the replies it had missed)
        assert info.frames == sum(len(x) for x in streams.xs[: info.server_seq])
        assert info.replayed == max(0, info.client_seq - info.server_seq)
        assert info.redelivered == max(0, info.server_seq - info.client_seq)
    assert fleet.fleet()["expired"] >= len(moved)
    fleet.wait_replicas(2)  # Serve replaced the dead replica


def test_scale_2_to_3_to_1_mid_stream_resumes_exactly(fleet: FleetProcess) -> None:
    fleet.wait_replicas(2)
    streams = _Streams(fleet.url, 8, 0.005)
    streams.wait(10)
    fleet.scale(3)
    fleet.wait_replicas(3)
    late = StreamClient(fleet.url, resume_within=120)  # a stream opened on the wider fleet
    late.step(np.ones((2, 3), np.float32))
    everyone = [*streams.clients, late]
    owner = _owners(fleet, everyone)
    fleet.scale(1)
    (only,) = fleet.wait_replicas(1)
    streams.wait(streams.done + 20)
    streams.finish()
    late.step(np.ones((2, 3), np.float32))  # idle since: it finds out now if it must move
    moved = [c for c in everyone if c.resumes]
    assert moved, "no stream lived on a replica that stopped"
    # exactly the streams of the replicas that stopped moved; the others were left alone
    assert {c.stream_id for c in moved} == {s for s, r in owner.items() if r != only["replica"]}
    for c in moved:  # a graceful stop saves exactly: nothing to resend
        for info in c.resumes:
            assert info.kind == "saved" and info.reason in ("shutdown", "handover"), info
            assert info.replayed == 0 and info.server_seq == info.client_seq
    assert late.close() == 4
    view = fleet.fleet(streams=True)
    assert [r["replica"] for r in view["replicas"]] == [only["replica"]]


def test_sigterm_saves_every_stream_and_stops_the_cluster(fleet: FleetProcess) -> None:
    clients = [StreamClient(fleet.url, resume_within=0) for _ in range(3)]
    for c in clients:
        c.step(np.ones((4, 3), np.float32))
    folder = fleet.folder
    replicas = {r["pid"] for r in fleet.fleet()["replicas"]}
    assert replicas <= set(cluster_pids(folder)), "a sweep would miss a replica (retitled)"
    assert fleet.terminate(120) == 0
    assert not cluster_pids(folder), "the local cluster outlived edgeseq serve --ray"
    assert not Path(folder).exists()
    state: Path = fleet.state  # type: ignore[attr-defined]
    for c in clients:
        meta = Snapshot.load(state / f"{c.stream_id}.snap").meta
        assert meta["reason"] == "shutdown" and meta["frames"] == 4
        with pytest.raises(Exception, match=r"lost|shutting down"):
            c.step(np.ones((4, 3), np.float32))
    assert "replicas saved their streams" in fleet.log()
