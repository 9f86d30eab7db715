"""Server processes for the serving benchmarks: start one, find its URL, stop it by PID
(and whatever of a local Ray cluster outlives it), and read the CPU time and memory of a
process tree from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Command", "cpu_by_kind", "rss_mb", "tree"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Command:
    """``edgeseq serve`` (``--ray`` or not) in a subprocess; its log in a file."""

    def __init__(self, model: Path, args: list[str], log: Path, timeout: float = 300) -> None:
        cli = "from edgeseq.cli import main; main()"
        argv = [sys.executable, "-c", cli, "serve", str(model), *args]
        self.log = log
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on (ws://\S+)", log.read_text())
            if m:
                self.url = m.group(1)
                self.http = self.url.replace("ws://", "http://").rsplit("/v1/", 1)[0]
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"edgeseq serve did not start:\n{log.read_text()[-3000:]}")

    def grep(self, pattern: str) -> str | None:
        m = re.search(pattern, self.log.read_text())
        return m.group(1) if m else None

    def stop(self) -> int | None:
        folder = self.grep(r"local Ray cluster in (\S+)")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if folder:  # whatever of the cluster outlived it (a failure): killed by PID
            deadline = time.monotonic() + 30  # until none is left: a raylet may fork meanwhile
            while (pids := tree(matching(folder))) and time.monotonic() < deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            shutil.rmtree(folder, ignore_errors=True)
        return self.proc.returncode


def processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU seconds) of every process we may read."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[1]), cmd, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


def matching(text: str) -> list[int]:
    """Processes whose command line or environment holds ``text`` (Ray's workers retitle
    themselves, but inherit the environment that names their cluster's folder)."""
    found = []
    for pid, (_, cmd, _) in processes().items():
        if text in cmd:
            found.append(pid)
            continue
        try:
            if text.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants."""
    procs = processes()
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo += [p for p, (ppid, _, _) in procs.items() if ppid == pid]
    return sorted(found)


def cpu_by_kind(root: int, replicas: set[int]) -> dict[str, float]:
    """CPU seconds so far under ``root``: the replicas, Serve's HTTP proxy (per-message work
    like the replicas'), and everything else (the driver, GCS, raylet, controller, ledger:
    background work that does not grow with frames)."""
    procs = processes()
    used = {"replicas": 0.0, "proxy": 0.0, "other": 0.0}
    for pid in tree([root]):
        if pid not in procs:
            continue
        _, cmd, cpu = procs[pid]
        kind = "replicas" if pid in replicas else "proxy" if "ProxyActor" in cmd else "other"
        used[kind] += cpu
    return used


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024
