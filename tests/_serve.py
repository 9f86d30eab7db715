"""A real ``edgeseq serve`` in a subprocess on 127.0.0.1 (a free port), stopped by its PID.

``ServerProcess`` starts the command, reads the URL from its first line, keeps every log
line, and on exit sends SIGTERM (then SIGKILL after a bounded wait), so no test leaves a
server behind. Torch is not imported here.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["ServerProcess", "http_get"]

_START_TIMEOUT = 60.0


class ServerProcess:
    """``with ServerProcess(model, "--state-dir", d) as s: s.url ...``"""

    def __init__(self, model: str | Path, *args: str) -> None:
        cli = "from edgeseq.cli import main; main()"
        self.args = [sys.executable, "-c", cli, "serve", str(model), "--port", "0", *args]
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._drain: threading.Thread | None = None
        self.url = ""
        self.http = ""
        self.start_timeout = _START_TIMEOUT

    def start(self) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        first = threading.Event()

        def drain() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                if "listening on" in line:
                    first.set()
            first.set()

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        if not first.wait(self.start_timeout) or not self.lines:
            self.kill()
            raise RuntimeError(f"edgeseq serve did not start: {self.lines}")
        m = re.search(r"(ws://\S+)", "\n".join(self.lines))
        if m is None:
            self.kill()
            raise RuntimeError("edgeseq serve failed to start:\n" + "\n".join(self.lines))
        self.url = m.group(1)
        self.http = self.url.replace("ws://", "http://").rsplit("/v1/", 1)[0]
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (a graceful shutdown); the exit status."""
        assert self.proc is not None
        os.kill(self.pid, signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._drained()
        return status

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to save."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)
            self._drained(2.0)  # a killed fleet's cluster may hold the pipe until its sweep

    def _drained(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until the reader thread has every line the exited server wrote:
        the process can be reaped before that thread has read the pipe's last lines (its
        shutdown lines), which a test reads from :meth:`log` right after."""
        if self._drain is not None:
            self._drain.join(timeout)

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_log(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r} in:\n{self.log()}")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(30)
        self.kill()


def http_get(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET, errors included."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()
