"""A real ``edgeseq serve --ray`` in a subprocess: a local Ray cluster on this machine in its
own temporary folder, stopped by the test that started it, even when the test fails.

:class:`FleetProcess` is :class:`~_serve.ServerProcess` with the cluster's address and
token (read from its log), a scale helper (another process joins the cluster with
``RayFleet.attach``), the fleet's ``/v1/replicas``, and :meth:`sweep`: after the command
ends, any process still running from the cluster's folder is killed by its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from _serve import ServerProcess, http_get

__all__ = ["FleetProcess", "cluster_pids"]


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


class FleetProcess(ServerProcess):
    """``with FleetProcess(model, "--replicas", "2") as f: f.url, f.scale(3), f.fleet()``"""

    def __init__(self, model: str | Path, *args: str) -> None:
        super().__init__(model, "--ray", *args)
        self.start_timeout = 240.0  # a cold Ray cluster on 2 busy cores
        self.address = ""
        self.token = ""

    def start(self) -> FleetProcess:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            super().start()
            line = self.wait_log(r"Ray at \S+ \(local; token in \S+\)", 10)
        except BaseException:
            self.sweep()
            raise
        m = re.search(r"Ray at (\S+) \(local; token in (\S+)\)", line)
        assert m is not None
        self.address, self.token = m.group(1), m.group(2)
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
        status, _, body = http_get(self.http + "/v1/replicas" + ("?streams=1" if streams else ""))
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
        pids = cluster_pids(self.folder)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.sweep()
