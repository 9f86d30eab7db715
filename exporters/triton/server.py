"""A real ``tritonserver`` on this machine: the binary bundled in the ``nvidia-pytriton`` wheel.

``scripts/triton-setup`` (run by ``make install``) fetches the wheel with ``pip download
--no-deps``, unpacks the server and its python backend, installs the backend stub for this
Python and gives the stub its own small environment (numpy<2, reaching this project's
packages through a ``.pth``), then records where everything is in ``install.json``.
:class:`LocalTriton` reads that record; :class:`TritonServer` starts the server on free
127.0.0.1 ports, waits until it is ready, and stops it by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edgeseq.errors import EdgeseqError

__all__ = ["LocalTriton", "TritonServer", "TritonUnavailable", "default_home"]

_ROOT = Path(__file__).resolve().parents[2]


class TritonUnavailable(EdgeseqError, RuntimeError):
    """No usable local tritonserver: not set up, or it cannot start on this machine."""


def default_home() -> Path:
    """Where ``scripts/triton-setup`` puts the server: ``$EDGESEQ_TRITON_HOME`` or
    ``.cache/triton`` in the source tree."""
    return Path(os.environ.get("EDGESEQ_TRITON_HOME") or _ROOT / ".cache" / "triton")


@dataclass(frozen=True)
class LocalTriton:
    """Paths of a set-up server: binary, backends folder, the stub's environment, libpython."""

    tritonserver: Path
    backends: Path
    stub_bin: Path
    libdir: Path
    package: str = "nvidia-pytriton"

    @classmethod
    def find(cls, home: str | Path | None = None) -> LocalTriton:
        """Read ``install.json``; raise :class:`TritonUnavailable` saying how to set it up."""
        record = Path(home or default_home()) / "install.json"
        try:
            info = json.loads(record.read_text())
            found = cls(
                Path(info["tritonserver"]),
                Path(info["backends"]),
                Path(info["stub_bin"]),
                Path(info["libdir"]),
                info.get("package", "nvidia-pytriton"),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise TritonUnavailable(
                f"no local tritonserver set up ({record}: {type(exc).__name__}); expected the "
                "record scripts/triton-setup writes. Run `make triton` (or scripts/triton-setup)."
            ) from None
        missing = [str(p) for p in (found.tritonserver, found.backends, found.stub_bin)
                   if not p.exists()]  # fmt: skip
        if missing:
            raise TritonUnavailable(
                f"the local tritonserver set-up is incomplete (missing {missing}); run "
                "scripts/triton-setup --force."
            )
        return found

    def environment(self) -> dict[str, str]:
        """The server's environment: the stub's venv first on PATH (its interpreter finds
        the venv's numpy<2), this Python's libpython first on LD_LIBRARY_PATH."""
        env = dict(os.environ)
        env["PATH"] = f"{self.stub_bin}{os.pathsep}{env.get('PATH', '')}"
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = str(self.libdir) + (f"{os.pathsep}{old}" if old else "")
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(key, None)
        return env


# tritonserver's words when a port it was given is taken ("failed to start HTTP service:
# Unavailable - Socket '127.0.0.1:PORT' already in use"; the same for GRPC and Metrics)
PORT_TAKEN = "already in use"
PORT_ATTEMPTS = 3


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class TritonServer:
    """``tritonserver`` serving ``repository`` on 127.0.0.1 (free ports); a context manager.

    Examples
    --------
    >>> with TritonServer("repo") as server:
    ...     client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
    """

    def __init__(
        self,
        repository: str | Path,
        install: LocalTriton | None = None,
        *,
        startup_timeout: float = 120.0,
        log_verbose: int = 0,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.install = install or LocalTriton.find()
        self.startup_timeout = startup_timeout
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None
        self.http_port = self.grpc_port = self.metrics_port = 0
        fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        self.log_path = Path(name)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> TritonServer:
        """Start the server and wait until every model is ready (bounded by startup_timeout).

        The ports are free when chosen, but tritonserver binds them only after loading its
        models; if another process took one meanwhile, the server exits saying so and is
        started again on new ports (``PORT_ATTEMPTS`` times at most).
        """
        deadline = time.monotonic() + self.startup_timeout
        for attempt in range(1, PORT_ATTEMPTS + 1):
            since = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn()
            status = self._wait_ready(deadline)
            if status is None:
                return self
            taken = PORT_TAKEN in self._log_text(since)
            if not taken or attempt == PORT_ATTEMPTS:
                tail = self.log_tail()
                self.stop()
                raise TritonUnavailable(
                    f"tritonserver exited with status {status} while starting; its log ends: {tail}"
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        self.http_port, self.grpc_port, self.metrics_port = _free_ports(3)
        cmd = [
            str(self.install.tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.install.backends}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            f"--log-verbose={self.log_verbose}",
        ]
        self.process = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.install.environment(),
            start_new_session=True,  # its python-backend stubs die with it when stopped
        )

    def _wait_ready(self, deadline: float) -> int | None:
        """None once the server is ready; its exit status if it exited while starting."""
        assert self.process is not None
        while time.monotonic() < deadline:
            status = self.process.poll()
            if status is not None:
                return status
            if self._ready():
                return None
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise TritonUnavailable(
            f"tritonserver was not ready after {self.startup_timeout:.0f} s; its log ends: {tail}"
        )

    def _log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _ready(self) -> bool:
        url = f"http://{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 6) -> str:
        """The log's error lines (Triton prefixes them with E), else its last lines."""
        text = self._log_text().strip().splitlines()
        if not text:
            return "(no log)"
        errors = [ln for ln in text if ln[:1] in "Ee" and "CudaDriverHelper" not in ln]
        return " | ".join((errors or text)[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group (server and stubs), SIGKILL after ``timeout``."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._log.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
