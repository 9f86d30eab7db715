"""edgeseq.serve: stream over the network — many devices, one model, nothing lost on restart.

``edgeseq serve MODEL.onnx`` (or :class:`Server`) puts a :class:`~edgeseq.runtime.StreamPool`
behind a WebSocket endpoint: one connection is one stream, the frames that arrive from all
connections in one event-loop tick share onnxruntime calls, and every stream can be resumed — after
a dropped connection, an idle eviction, or a restart with the same ``--state-dir``. The
same port answers ``/healthz``, ``/v1/model`` (the contract), ``/metrics`` (Prometheus)
and ``/`` (a page that plots a dropped CSV's outputs as they stream).

:class:`RayFleet` (``edgeseq serve --ray``) runs the same service as Ray Serve replicas:
one WebSocket stays on one replica, a ledger gives each stream an exclusive lease, and a
stream whose replica stops or dies resumes on another from the shared state folder
(docs/scale-out.md).

This package sits on top of the runtime: it imports the core, :mod:`edgeseq.runtime` and
the wire protocol in :mod:`edgeseq.client.protocol` (shared with the client), plus the
``serve`` extra (``websockets``, ``prometheus_client``) and, for ``--ray`` only, the
``ray`` extra (imported inside functions); nothing below imports it.
Modules: ``_options`` (limits), ``_service`` (the core: handshake decisions, streams,
saves, graceful stop), ``_server`` (the ``websockets`` transport and signals),
``_socket`` (its connection: messages by callback, the common frames parsed there),
``_connection`` (one stream's messages, in order), ``_ticks`` (every connection's frames
of one loop tick stepped together), ``_registry`` (stream ids, resume secrets,
eviction), ``_store`` (the state folder), ``_frames`` (wire ↔ model, reply text),
``_metrics``; for ``--ray``:
``_asgi`` (the ASGI transport), ``_ledger`` (stream leases), ``_ownership`` (a replica's
side of them), ``_ray_replica`` (the Serve deployment), ``_fleet_metrics`` (every
replica's ``/metrics``), ``_ray_fleet`` (deploy, scale, stop). ``page.html`` is the
browser page. The protocol is documented in docs/protocol.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeseq.client import load_tokens
from edgeseq.serve._options import ServeOptions
from edgeseq.serve._server import Server

if TYPE_CHECKING:
    from edgeseq.serve._ray_fleet import RayFleet, RayOptions

__all__ = ["RayFleet", "RayOptions", "ServeOptions", "Server", "load_tokens"]


def __getattr__(name: str) -> Any:
    """``RayFleet``/``RayOptions`` load on first use: they need the ``ray`` extra."""
    if name in ("RayFleet", "RayOptions"):
        from edgeseq.serve import _ray_fleet

        return getattr(_ray_fleet, name)
    raise AttributeError(f"module 'edgeseq.serve' has no attribute {name!r}")
