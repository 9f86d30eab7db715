"""A real ``edgeseq serve --ray`` in a subprocess: a local Ray cluster on this machine in its
own temporary folder, stopped by the test that started it, even when the test fails.

:class:`FleetProcess` is :class:`~_serve.ServerProcess` with the cluster's address and
token (read from its log), a scale helper (another process joins the cluster with
``RayFleet.attach``), the fleet's ``/v1/replicas``, and :meth:`sweep`: after the command
ends, any process still running from the cluster's folder is killed by its PID.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _serve import ServerProcess, http_get

__all__ = ["FleetProcess", "RayHead", "cluster_pids", "need_ray", "sweep"]


def need_ray() -> None:
    """Skip a module without Ray, with the reason; fail instead where the set-up installs it
    (``.ci/run`` sets ``EDGESEQ_REQUIRE_RAY``: on CI these tests never skip)."""
    if importlib.util.find_spec("ray") is not None:
        return
    reason = "edgeseq serve --ray needs the ray extra (make install has it)"
    if os.environ.get("EDGESEQ_REQUIRE_RAY"):
        pytest.fail(f"EDGESEQ_REQUIRE_RAY is set but Ray is not installed: {reason}")
    pytest.skip(reason, allow_module_level=True)


def cluster_pids(folder: str) -> list[int]:
    """PIDs of this cluster's processes: their command line or their environment names
    ``folder`` (Ray's workers retitle themselves but inherit the token path under it)."""
    found = []
    key = folder.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if key in (entry / "cmdline").read_bytes() or key in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def sweep(folder: str, timeout: float = 30.0) -> list[int]:
    """Kill (SIGKILL, by PID) every process of the cluster in ``folder`` until none is left
    (a killed process lingers a moment; a raylet may have forked a worker meanwhile), then
    remove the folder (Ray's session logs); the PIDs killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while pids := cluster_pids(folder):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed.update(pids)
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)
    return sorted(killed)


class RayHead:
    """``ray start --head`` in its own folder: a cluster edgeseq did not start (for
    ``--ray-address``), with its own token; :meth:`__exit__` sweeps it by PID, always.

    ``with RayHead() as head: head.address, head.env``"""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="edgeseq-rayhead-", dir="/tmp")  # short paths
        token = Path(self.folder) / "auth_token"
        token.write_text(secrets.token_hex(32), "utf-8")
        token.chmod(0o600)
        self.env = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.address = ""  # host:port of its control store, known once it runs

    def __enter__(self) -> RayHead:
        # --port=0: the control store binds a free port itself and Ray writes the address
        # to ray_current_cluster (a port chosen here could be taken before it binds)
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head"]
        cmd += ["--port=0", "--node-ip-address=127.0.0.1"]
        cmd += ["--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"]
        cmd += [f"--temp-dir={self.folder}/ray"]
        try:
            out = subprocess.run(
                cmd, env=dict(os.environ, **self.env), capture_output=True, text=True, timeout=240
            )
            assert out.returncode == 0, out.stderr[-3000:]
            written = (Path(self.folder) / "ray" / "ray_current_cluster").read_text().strip()
            port = re.fullmatch(r"\S+:([1-9][0-9]*)", written)  # Ray names the machine's IP
            assert port is not None, written
            self.address = f"127.0.0.1:{port.group(1)}"
        except BaseException:
            sweep(self.folder)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        sweep(self.folder)


class FleetProcess(ServerProcess):
    """``with FleetProcess(model, "--replicas", "2") as f: f.url, f.scale(3), f.fleet()``"""

    def __init__(self, model: str | Path, *args: str) -> None:
        super().__init__(model, "--ray", *args)
        self.start_timeout = 240.0  # a cold Ray cluster on 2 busy cores
        self.address = ""
        self.token = ""
        self.bearer: str | None = None  # for the HTTP endpoints of a fleet with --token-file

    def start(self) -> FleetProcess:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            super().start()
            line = self.wait_log(r"Ray at \S+", 10)
        except BaseException:
            self.sweep()
            raise
        m = re.search(r"Ray at ([^\s;]+)(?: \(local; token in (\S+)\))?", line)
        assert m is not None
        self.address, self.token = m.group(1), m.group(2) or ""
        return self

    @property
    def folder(self) -> str:
        """The cluster's temporary folder (named in the command's log before Ray starts)."""
        for line in self.lines:
            m = re.search(r"local Ray cluster in (\S+)", line)
            if m:
                return m.group(1)
        return ""

    def fleet(self, streams: bool = False) -> dict:
        """``GET /v1/replicas``: the ledger's view of every replica."""
        path = "/v1/replicas" + ("?streams=1" if streams else "")
        status, _, body = http_get(self.http + path, self.bearer)
        assert status == 200, body
        return json.loads(body)

    def wait_replicas(self, n: int, timeout: float = 90.0) -> list[dict]:
        """Wait until exactly ``n`` replicas report to the ledger and none is stopping."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.fleet()["replicas"]
            if len(got) == n and not any(r["stopping"] for r in got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} replicas, the ledger lists {got}")
            time.sleep(0.25)

    def scale(self, replicas: int) -> None:
        """Another process joins the cluster and re-sizes the fleet in place."""
        code = (
            "from edgeseq.serve import RayFleet; "
            f"f = RayFleet.attach({self.address!r}); f.scale({replicas}); f.detach()"
        )
        env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=self.token)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
        )
        assert out.returncode == 0, out.stderr[-3000:]

    def sweep(self) -> list[int]:
        """Kill (SIGKILL, by PID) whatever of this cluster still runs; the PIDs killed."""
        if not self.folder:
            return []
        return sweep(self.folder)

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.sweep()
