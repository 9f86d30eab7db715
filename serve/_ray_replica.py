"""One replica of ``edgeseq serve --ray``: a Ray Serve deployment whose ASGI ingress is the
same stream service as ``edgeseq serve``, with a lease holder so no two replicas step one
stream, and the fleet-wide endpoints (``/metrics`` of every replica, ``/v1/replicas``).

The Serve proxy keeps a WebSocket on the replica it was routed to for its whole life, so
every frame of a connection reaches the replica that holds the stream's state, in order;
the ledger's leases decide which replica that is when a stream comes back on another
connection. Imported only inside Ray workers and by ``_ray_fleet`` (needs ``ray[serve]``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseq.client import protocol as P
from edgeseq.errors import InputError
from edgeseq.serve._asgi import AsgiApp
from edgeseq.serve._fleet_metrics import metric_samples, render_fleet
from edgeseq.serve._ledger import LEDGER_NAMESPACE, ledger_name
from edgeseq.serve._options import ServeOptions
from edgeseq.serve._ownership import LeaseHolder
from edgeseq.serve._service import Answer, StreamService

__all__ = ["REPLICAS_PATH", "FleetConfig", "LedgerLink", "StreamReplica"]

REPLICAS_PATH = "/v1/replicas"


@dataclass(frozen=True)
class FleetConfig:
    """What every replica of one application shares besides the model and its options."""

    app: str
    lease_seconds: float
    claim_seconds: float
    probe: str | None = None  # name of the file the deployer wrote into the state folder
    nonce: str | None = None  # and its content: proves the folder is the same one


class LedgerLink:
    """The ledger's named Ray actor, resolved lazily and again after it restarted."""

    def __init__(self, app: str) -> None:
        self.app = app
        self._handle: Any = None

    def _actor(self) -> Any:
        if self._handle is None:
            import ray

            self._handle = ray.get_actor(ledger_name(self.app), namespace=LEDGER_NAMESPACE)
        return self._handle

    def reset(self) -> None:
        self._handle = None

    async def poll(self, *args: Any) -> dict[str, Any]:
        return await self._actor().poll.remote(*args)

    async def claim(self, *args: Any) -> bool:
        return await self._actor().claim.remote(*args)

    async def release(self, *args: Any) -> None:
        await self._actor().release.remote(*args)

    async def owner(self, stream: str) -> str | None:
        return await self._actor().owner.remote(stream)

    async def fleet(self, detail: bool = False) -> dict[str, Any]:
        return await self._actor().fleet.remote(detail)


class StreamReplica:
    """The deployment class (``serve.ingress()`` is applied by ``_ray_fleet``)."""

    async def __init__(self, model: bytes, options: ServeOptions, fleet: FleetConfig) -> None:
        from ray import serve

        self.id = serve.get_replica_context().replica_tag
        self.node = socket.gethostname()
        _check_state_dir(options, fleet, self.node)
        self.link = LedgerLink(fleet.app)
        self.leases = LeaseHolder(
            self.id, self.link, fleet.lease_seconds, fleet.claim_seconds, self._log
        )
        self.service = StreamService(model, options, self._log, self.leases, self.leases.guard)
        self.service.endpoints[P.METRICS_PATH] = self._metrics
        self.service.endpoints[REPLICAS_PATH] = self._replicas
        self.service.start()
        self.leases.start(self.service, self._status)
        self._log(f"replica ready on {self.node} (pid {os.getpid()})")

    def __serve_build_asgi_app__(self) -> AsgiApp:
        return AsgiApp(self.service)

    def check_health(self) -> None:
        if self.leases.failure is not None:  # pragma: no cover (a bug): let Serve replace it
            raise RuntimeError(f"lease holder failed: {self.leases.failure}")

    async def __del__(self) -> None:
        """Serve stops this replica: whatever the ledger did not already stop, stop now."""
        if hasattr(self, "leases"):
            await self.leases.stop()
            self.leases.close()
            self.service.close()

    # ------------------------------------------------------------------ fleet endpoints
    def _log(self, line: str) -> None:
        print(f"[{getattr(self, 'id', '?')}] {line}", file=sys.stderr, flush=True)

    def _status(self, detail: bool) -> dict[str, Any]:
        s = self.service
        status: dict[str, Any] = {
            "pid": os.getpid(),
            "node": self.node,
            "streams": len(s.pool),
            "connections": len(s.connections),
            "frames": sum(s.stepped.values()),
            "metrics": metric_samples(s.metrics.registry),
        }
        if detail:
            status["stepped"] = dict(s.stepped)
        return status

    async def _metrics(self, query: dict[str, list[str]]) -> Answer:
        fleet = await self.link.fleet(False)
        own = {**self._status(False), "replica": self.id}
        text = render_fleet(fleet, own)
        from edgeseq.serve._metrics import CONTENT_TYPE

        return Answer(200, text, CONTENT_TYPE)

    async def _replicas(self, query: dict[str, list[str]]) -> Answer:
        detail = query.get("streams", ["0"])[0] not in ("0", "", "false")
        fleet = await self.link.fleet(detail)
        for r in fleet["replicas"]:
            r.pop("metrics", None)
        return Answer(200, json.dumps(fleet), "application/json")


def _check_state_dir(options: ServeOptions, fleet: FleetConfig, node: str) -> None:
    """Every replica must see the deployer's state folder, or streams cannot move."""
    if options.state_dir is None or fleet.probe is None:
        return
    probe = Path(options.state_dir) / fleet.probe
    try:
        seen = probe.read_text("utf-8").strip()
    except OSError:
        seen = None
    if seen != fleet.nonce:
        raise InputError(
            f"--state-dir {options.state_dir} is not the folder the deployer wrote to: the "
            f"replica on {node} cannot read {probe.name} there. Streams can move between "
            "replicas only through a folder every node mounts (a shared filesystem)."
        )
