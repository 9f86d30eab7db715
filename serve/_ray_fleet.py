"""``edgeseq serve --ray``: deploy the stream service as N Ray Serve replicas, scale it, stop it.

:class:`RayFleet` starts (or joins) a Ray cluster, starts Serve's HTTP proxy on the port of
``ServeOptions``, creates the application's ledger (a named Ray actor, ``_ledger``) and
deploys ``_ray_replica.StreamReplica``. Without an address it starts a local cluster on
this machine (its own temporary folder, a fresh auth token, no usage reporting) and tears
it down on exit; with one it joins that cluster and removes only its application.

Stopping is graceful: every replica saves every stream and ends its connections with a
resume notice before Serve removes it, as ``edgeseq serve`` does on SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeseq.client import protocol as P
from edgeseq.errors import InputError
from edgeseq.runtime._session import ModelSource
from edgeseq.serve._ledger import LEDGER_NAMESPACE, ledger_name
from edgeseq.serve._options import ServeOptions, log_to_stderr
from edgeseq.serve._ray_cluster import (
    DEPLOYMENT,
    check_model,
    free_port,
    hold_port,
    ingress_class,
    model_bytes,
    remote_ledger,
    short_tmp,
    start_local,
)
from edgeseq.serve._ray_replica import FleetConfig

__all__ = ["DEPLOYMENT", "RayFleet", "RayOptions"]


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide ``edgeseq serve --ray`` runs.

    Parameters
    ----------
    replicas
        Replicas of the stream service (each one process holding a ``StreamPool``).
    address
        A running Ray cluster (``auto`` or ``HOST:PORT``); None starts a local one here
        and stops it on exit.
    replica_cpus
        CPUs Ray reserves for each replica (fractions allowed, e.g. 0.25).
    cluster_cpus
        CPUs of the local cluster (default: this machine's); ignored with ``address``.
    app
        Serve application name (one ledger per application).
    lease_seconds
        How long a silent replica keeps its streams before they are presumed lost and
        resume on another replica from their last save (also bounds a hand-over's wait).
    """

    replicas: int = 2
    address: str | None = None
    replica_cpus: float = 1.0
    cluster_cpus: int | None = None
    app: str = "edgeseq"
    lease_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, int) or isinstance(self.replicas, bool):
            raise InputError(f"replicas must be a positive int, got {self.replicas!r}.")
        if self.replicas < 1:
            raise InputError(f"replicas must be a positive int, got {self.replicas!r}.")
        if not self.replica_cpus > 0:
            raise InputError(f"replica_cpus must be positive, got {self.replica_cpus!r}.")
        if not self.lease_seconds >= 1:
            raise InputError(f"lease_seconds must be at least 1, got {self.lease_seconds!r}.")
        if self.cluster_cpus is not None and self.cluster_cpus < 1:
            raise InputError(f"cluster_cpus must be at least 1, got {self.cluster_cpus!r}.")


class RayFleet:
    """``edgeseq serve --ray``: the stream service as Ray Serve replicas (module docstring).

    Examples
    --------
    >>> fleet = RayFleet("model.onnx", ServeOptions(port=8765), RayOptions(replicas=2))
    >>> fleet.run()          # blocks; SIGTERM saves every stream, removes the app, returns 0
    >>> # or: fleet.start(); fleet.scale(3); fleet.stop()
    """

    def __init__(
        self,
        model: ModelSource,
        options: ServeOptions | None = None,
        ray_options: RayOptions | None = None,
        log: Callable[[str], None] = log_to_stderr,
    ) -> None:
        self.ray = ray_options or RayOptions()
        self.log = log
        self.model = model_bytes(model)
        check_model(self.model)
        options = options or ServeOptions()
        self.temp: Path | None = None
        if self.ray.address is None:
            self.temp = Path(tempfile.mkdtemp(prefix="edgeseq-ray-", dir=short_tmp()))
            if options.state_dir is None:  # one machine: a folder here is shared by all
                options = replace(options, state_dir=self.temp / "state")
        elif options.state_dir is None:
            raise InputError(
                "--ray-address needs --state-dir: a folder every node of the cluster mounts "
                "(NFS, a cloud file share), where replicas save streams so others can resume "
                "them."
            )
        self._port_hold: socket.socket | None = None  # our cluster's proxy port, held
        if options.port == 0 and self.ray.address is None:
            port, self._port_hold = hold_port(options.host)
            options = replace(options, port=port)
        elif options.port == 0:  # another's cluster: its proxies may run as another user
            options = replace(options, port=free_port(options.host))
        self.options = options
        self.port = options.port
        self._ledger: Any = None
        self._started = False
        self._attached = False

    @property
    def url(self) -> str:
        return f"ws://{self.options.host}:{self.port}{P.STREAM_PATH}"

    @classmethod
    def attach(
        cls, address: str, app: str = "edgeseq", log: Callable[[str], None] = log_to_stderr
    ) -> RayFleet:
        """Join a fleet another process deployed (to :meth:`scale` it or list its
        :meth:`replicas`); :meth:`detach` leaves it running. A local cluster of
        ``edgeseq serve --ray`` needs its token: ``RAY_AUTH_MODE=token`` and
        ``RAY_AUTH_TOKEN_PATH`` (the path it prints)."""
        import ray

        ray.init(address=address, namespace=LEDGER_NAMESPACE, logging_level=logging.WARNING)
        try:
            ledger = ray.get_actor(ledger_name(app), namespace=LEDGER_NAMESPACE)
            model, options, fleet, ray_options = ray.get(ledger.get_config.remote(), timeout=30)
        except Exception:
            ray.shutdown()
            raise InputError(
                f"no edgeseq fleet named {app!r} runs on the Ray cluster at {address}"
            ) from None
        self = cls.__new__(cls)
        self.ray, self.log, self.model, self.options = ray_options, log, model, options
        self.fleet, self.port, self.temp, self._ledger = fleet, options.port, None, ledger
        self._port_hold = None
        self._started, self._attached = True, True
        return self

    def detach(self) -> None:
        """Leave a fleet joined with :meth:`attach` (it keeps running)."""
        import ray

        self._started = False
        ray.shutdown()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start (or join) the cluster, Serve, the ledger; deploy ``replicas`` replicas."""
        self._init_ray()
        self._started = True
        from ray import serve

        from edgeseq.serve._store import StateStore

        StateStore(self.options.state_dir, "probe")  # writable here, or a clear error
        probe = f".edgeseq-fleet-{self.ray.app}"
        nonce = secrets.token_hex(16)
        (Path(self.options.state_dir) / probe).write_text(nonce, "utf-8")  # type: ignore[arg-type]
        self.fleet = FleetConfig(
            self.ray.app, self.ray.lease_seconds, 2 * self.ray.lease_seconds + 5, probe, nonce
        )
        serve.start(
            http_options={"host": self.options.host, "port": self.port, "location": "EveryNode"},
            logging_config={"log_level": "WARNING", "enable_access_log": False},
        )
        details = serve.context._get_global_client().get_serve_details()
        self.port = int(details["http_options"]["port"])  # an existing Serve keeps its own
        config = (self.model, self.options, self.fleet, self.ray)
        self._ledger = (
            remote_ledger()
            .options(
                name=ledger_name(self.ray.app),
                namespace=LEDGER_NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                num_cpus=0,
                max_concurrency=10_000,
            )
            .remote(self.ray.lease_seconds, self.ray.app, config)
        )
        self.scale(self.ray.replicas)
        self.log(
            f"edgeseq serve --ray: listening on {self.url}  ({self.ray.replicas} replicas of "
            f"{self.ray.replica_cpus:g} CPU, state {self.options.state_dir})"
        )
        token = os.environ.get("RAY_AUTH_TOKEN_PATH")
        self.log(
            f"  Ray at {self.address}"
            + (f" (local; token in {token})" if self.ray.address is None and token else "")
            + f"; metrics of every replica at http://{self.options.host}:{self.port}/metrics"
        )

    def scale(self, replicas: int) -> None:
        """Deploy (or re-size in place) the stream service with ``replicas`` replicas.

        Streams of replicas that go away are saved and resume on the others; new
        replicas take new streams (connections stay where they are)."""
        from ray import serve

        if replicas < 1:
            raise InputError(f"replicas must be at least 1, got {replicas}.")
        o = self.options
        deployment = serve.deployment(
            ingress_class(),
            name=DEPLOYMENT,
            num_replicas=replicas,
            ray_actor_options={"num_cpus": self.ray.replica_cpus},
            max_ongoing_requests=o.max_streams + 64,  # one per WebSocket, plus HTTP
            graceful_shutdown_timeout_s=o.shutdown_timeout + 10,
            graceful_shutdown_wait_loop_s=0.2,
        )
        try:  # one version for one build, so a new replica count re-sizes in place
            deployment = deployment.options(version=self._version(), _internal=True)
        except TypeError:  # pragma: no cover (a Serve without it replaces every replica)
            self.log("note: this Ray Serve re-deploys every replica on a change of size")
        serve.run(
            deployment.bind(self.model, o, self.fleet),
            name=self.ray.app,
            route_prefix="/",
            logging_config={"log_level": "WARNING", "enable_access_log": False},
        )
        self.ray = replace(self.ray, replicas=replicas)

    def replicas(self) -> list[dict[str, Any]]:
        """Serve's view of the replicas: ``replica``, ``state``, ``pid``, ``node_ip``."""
        from ray import serve

        details = serve.context._get_global_client().get_serve_details()
        app = details["applications"].get(self.ray.app)
        if app is None:
            return []
        return [
            {
                "replica": r["replica_id"],
                "state": str(getattr(r["state"], "value", r["state"])),
                "pid": r.get("pid"),
                "node_ip": r.get("node_ip"),
            }
            for r in app["deployments"][DEPLOYMENT]["replicas"]
        ]

    def stop(self) -> int:
        """Save every stream (each replica ends its connections with a resume notice),
        remove the application, and stop a local cluster. 0 if every replica stopped."""
        if not self._started:  # never started (or refused before Ray ran): its folder only
            self._release_port()
            if self.temp is not None:
                shutil.rmtree(self.temp, ignore_errors=True)
            return 0
        if self._attached:
            raise InputError("this fleet was joined with attach(); detach() leaves it running")
        import ray
        from ray import serve

        ok = True
        try:
            if self._ledger is not None:
                timeout = self.options.shutdown_timeout
                fleet = ray.get(self._ledger.stop_all.remote(timeout), timeout=timeout + 30)
                ok = all(r.get("stopped") for r in fleet["replicas"])
                saved = sum(r.get("owned", 0) for r in fleet["replicas"])
                self.log(
                    f"stop: {len(fleet['replicas'])} replicas saved their streams"
                    if ok
                    else f"stop: some replicas did not report their saves ({saved} leases held)"
                )
            serve.delete(self.ray.app)
            if self._ledger is not None:
                with contextlib.suppress(Exception):
                    ray.kill(self._ledger)
        except Exception as exc:
            ok = False
            self.log(f"stop: {type(exc).__name__}: {exc}")
        finally:
            self._started = False
            if self.ray.address is None:
                with contextlib.suppress(Exception):
                    serve.shutdown()
            ray.shutdown()
            self._release_port()
            if self.temp is not None:
                shutil.rmtree(self.temp, ignore_errors=True)
        return 0 if ok else 1

    def _release_port(self) -> None:
        if self._port_hold is not None:
            self._port_hold.close()
            self._port_hold = None

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop gracefully; the exit status."""
        done = threading.Event()
        try:
            self.start()
            for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which replaces them
                signal.signal(sig, lambda signum, frame: done.set())
            while not done.wait(0.5):
                pass
            self.log("shutting down (saving every stream)")
        finally:
            code = self.stop()
        return code

    # ------------------------------------------------------------------ internals
    def _version(self) -> str:
        """Serve's code version of this build: the model, the options, the edgeseq code."""
        from importlib.metadata import version

        digest = hashlib.sha256(self.model)
        digest.update(repr((self.options, self.fleet, self.ray.replica_cpus)).encode())
        digest.update(version("edgeseq").encode())
        return digest.hexdigest()[:16]

    @property
    def address(self) -> str:
        import ray

        return ray.get_runtime_context().gcs_address

    def _init_ray(self) -> None:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        if self.ray.address is not None:
            import ray

            ray.init(
                address=self.ray.address,
                namespace=LEDGER_NAMESPACE,
                logging_level=logging.WARNING,
            )
            return
        assert self.temp is not None
        start_local(self.temp, self.ray, self.log)
