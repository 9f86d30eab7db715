"""``edgeseq serve --ray --ray-address``: joining a Ray cluster edgeseq did not start (here a
``ray start --head`` on 127.0.0.1 in its own folder, with its own token). The command
deploys its replicas there, serves the same protocol (``--token-file`` included), saves
every stream on SIGTERM and removes only its application: the cluster keeps running. The
test's own cluster is swept by PID when the test ends, failing or not (the test ends by
failing on purpose to show it).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from _models import zoo
from _ray import FleetProcess, RayHead, cluster_pids, need_ray
from _serve import http_get

from edgeseq.client import StreamClient
from edgeseq.client import protocol as P
from edgeseq.errors import RemoteError
from edgeseq.runtime import Snapshot, StreamingPredictor

need_ray()


def _core(folder: str) -> list[int]:
    """PIDs of the cluster's GCS server and raylet (its workers come and go)."""
    found = []
    for pid in cluster_pids(folder):
        with contextlib.suppress(OSError):
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if exe.endswith((b"gcs_server", b"raylet")):
                found.append(pid)
    return sorted(found)


class _TestFailed(Exception):
    """Raised on purpose once every check passed: a failing test still stops its cluster."""


@pytest.mark.timeout(600)
def test_ray_address_joins_a_running_cluster_and_leaves_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, tokens = tmp_path / "state", tmp_path / "tokens.txt"
    tokens.write_text("fleet-token\n")
    xs = [np.full((t, 3), 0.1 * t, np.float32) for t in (3, 1, 4)]
    ref = StreamingPredictor(zoo.get("lstm"))
    head = RayHead()
    with pytest.raises(_TestFailed), head:
        for key, value in head.env.items():
            monkeypatch.setenv(key, value)  # the command's driver needs the cluster's token
        core = _core(head.folder)  # its control store and node manager
        assert len(core) == 2, "ray start left no GCS and raylet behind"
        f = FleetProcess(
            zoo.get("lstm"),
            "--ray-address", head.address, "--replicas", "1", "--replica-cpus", "0.25",
            "--state-dir", str(state), "--lease-seconds", "2", "--token-file", str(tokens),
        )  # fmt: skip
        f.start_timeout, f.bearer = 180.0, "fleet-token"
        with f:
            assert f.address.endswith(head.address.rsplit(":", 1)[1]) and f.token == ""
            (replica,) = f.wait_replicas(1)
            assert replica["pid"] in cluster_pids(head.folder)  # deployed on that cluster
            for path in (P.METRICS_PATH, "/v1/replicas", P.MODEL_PATH):  # --token-file holds
                assert http_get(f.http + path)[0] == 401
                assert http_get(f.http + path, "fleet-token")[0] == 200
            with pytest.raises(RemoteError, match="HTTP 401"):
                StreamClient(f.url, "wrong")
            c = StreamClient(f.url, "fleet-token", resume_within=0)
            for x in xs:
                np.testing.assert_array_equal(c.step(x), ref.step(x))
            assert f.terminate(120) == 0
            assert "replicas saved their streams" in f.log()
        meta = Snapshot.load(state / f"{c.stream_id}.snap").meta
        assert meta["reason"] == "shutdown" and meta["frames"] == sum(len(x) for x in xs)
        assert _core(head.folder) == core, "edgeseq stopped a cluster it did not start"
        with contextlib.suppress(OSError):  # its app is gone (the proxy is the cluster's)
            assert http_get(f.http + "/healthz")[0] != 200
        raise _TestFailed
    assert not cluster_pids(head.folder), "a process of the cluster outlived a failing test"
    assert not Path(head.folder).exists()
