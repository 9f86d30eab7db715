"""What ``edgeseq serve --ray`` asks of Ray, apart from the fleet's life cycle (``_ray_fleet``):
a local cluster, the ledger as a Ray actor that watches Serve's drains, the deployment's
ingress class, and the checks made before anything starts."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseq.errors import InputError
from edgeseq.runtime._session import ModelSource
from edgeseq.serve._ledger import LEDGER_NAMESPACE, Ledger
from edgeseq.serve._ray_replica import StreamReplica

__all__ = [
    "DEPLOYMENT",
    "check_model",
    "free_port",
    "hold_port",
    "ingress_class",
    "model_bytes",
    "remote_ledger",
    "short_tmp",
    "start_local",
]

DEPLOYMENT = "streams"


class _LedgerActor(Ledger):
    """The ledger as a Ray actor: knows whether Ray restarted it, watches Serve's drains."""

    def __init__(self, ttl: float, app: str, config: Any) -> None:
        import ray

        with warnings.catch_warnings():  # Ray's own property uses a deprecated one inside
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        super().__init__(
            ttl=ttl,
            beat=ttl / 5,
            restarted=restarted,
            draining=functools.partial(draining, app),
            config=config,
        )


def draining(app: str) -> set[str]:
    """Ids of the application's replicas Serve is stopping (scale-down, redeploy, delete)."""
    from ray.serve.context import _get_global_client  # Serve's own client (its REST API's data)

    details = _get_global_client().get_serve_details()
    deployment = details["applications"][app]["deployments"][DEPLOYMENT]
    return {
        r["replica_id"]
        for r in deployment["replicas"]
        if str(getattr(r["state"], "value", r["state"])) == "STOPPING"
    }


def start_local(temp: Path, options: Any, log: Callable[[str], None]) -> None:
    """Start a Ray cluster on this machine in ``temp`` (its own token, no usage reporting)
    and connect this process to it as its driver; torn down by ``ray.shutdown()``."""
    cpus = options.cluster_cpus or os.cpu_count() or 1
    need = options.replicas * options.replica_cpus
    if need > cpus:
        raise InputError(
            f"{options.replicas} replicas × {options.replica_cpus:g} CPU need {need:g} CPUs; "
            f"the local cluster has {cpus}. Use --replica-cpus {cpus / options.replicas:g} "
            "(or less), or join a larger cluster with --ray-address."
        )
    log(f"  starting a local Ray cluster in {temp} ({cpus} CPUs)")
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32), "utf-8")
    token.chmod(0o600)
    os.environ["RAY_AUTH_MODE"] = "token"  # the cluster's ports accept only this token
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # one line per stream event, each kept
    already = "ray" in sys.modules
    import ray

    if already:  # Ray read its settings when it was imported: read them again
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    ray.init(
        num_cpus=cpus,
        _temp_dir=str(temp / "ray"),
        include_dashboard=False,
        namespace=LEDGER_NAMESPACE,
        logging_level=logging.WARNING,
    )


@functools.cache
def ingress_class() -> type:
    from ray import serve

    return serve.ingress()(StreamReplica)


@functools.cache
def remote_ledger() -> Any:
    import ray

    return ray.remote(_LedgerActor)


def model_bytes(model: ModelSource) -> bytes:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise InputError(f"model file {str(path)!r} not found; expected an exported .onnx file.")
    return path.read_bytes()


def check_model(model: bytes) -> None:
    """Refuse here what every replica would refuse (so the error is one line, not a trace)."""
    from edgeseq.runtime import StreamPool
    from edgeseq.serve._frames import WireFormat

    with StreamPool(model, max_streams=1) as pool:
        WireFormat(pool.engine)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def hold_port(host: str) -> tuple[int, socket.socket | None]:
    """A free port on ``host`` for Serve's proxy, and the socket that holds it until the
    fleet stops (close it then).

    The proxy binds its port only after the cluster started (seconds later, while Ray's own
    processes bind dozens of ports): a port merely chosen could be taken meanwhile. The
    holding socket is bound with SO_REUSEPORT and never listens: the proxy (same user,
    SO_REUSEPORT too, Serve's default) binds beside it and alone receives connections;
    any other program is refused the port. (None, where SO_REUSEPORT is missing or Serve's
    ``SERVE_SOCKET_REUSE_PORT_ENABLED`` turned it off: then the port is only chosen.)
    """
    reuse = getattr(socket, "SO_REUSEPORT", None)
    if reuse is None or os.environ.get("SERVE_SOCKET_REUSE_PORT_ENABLED", "1") != "1":
        return free_port(host), None
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, reuse, 1)
        s.bind((host, 0))  # the kernel picks a port no socket holds, reuse or not
    except OSError:
        s.close()
        raise
    return int(s.getsockname()[1]), s


def short_tmp() -> str | None:
    """Ray's socket paths must stay under 108 bytes: prefer /tmp to a long TMPDIR."""
    return "/tmp" if os.path.isdir("/tmp") else None
