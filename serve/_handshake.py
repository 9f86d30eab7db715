"""The handshake's decisions, whatever the transport: which HTTP answer a request gets, and
whether a stream connection is accepted — a new stream, or a resume checked against its
secret, its model and the server's capacity (and, among several servers, its lease)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edgeseq.client import protocol as P
from edgeseq.errors import SnapshotError
from edgeseq.serve._registry import StreamRecord
from edgeseq.serve._store import Saved, token_hash, valid_id

if TYPE_CHECKING:
    from edgeseq.serve._service import StreamService

__all__ = ["Answer", "Handshake", "Ownership", "Plan"]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: a refused handshake, or an endpoint's body."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Plan:
    """An accepted stream handshake: what its connection will serve."""

    binary: bool
    subprotocol: str | None
    resume: tuple[str, StreamRecord | Saved, int] | None = None  # (id, found, acked)
    secret: str | None = None  # the resume secret (echoed in ready)


class Ownership(Protocol):
    """Exclusive stream leases when several servers share one state folder."""

    async def acquire(self, stream_id: str, fresh: bool = False) -> bool:
        """Wait until this server owns the stream; False if it could not (busy: retry).
        ``fresh``: an id just drawn at random, which nobody else can hold."""

    async def owned_elsewhere(self, stream_id: str) -> bool:
        """Whether another server holds the stream (it may not have saved it yet)."""

    def holds(self, stream_id: str) -> bool:
        """Whether this server holds the stream's lease now."""

    def release(self, stream_id: str) -> None:
        """The stream left this server's memory."""


class Handshake:
    """Answers requests for ``service`` (see the module docstring)."""

    def __init__(self, service: StreamService) -> None:
        self.service = service

    def refuse(self, status: int, text: str, peer: str) -> Answer:
        reason = P.HTTP_REFUSALS.get(status, "bad_request")
        self.service.metrics.refused.labels(reason).inc()
        self.service.log(f"refuse {status} {reason:<12} peer={peer}: {text}")
        auth = (("WWW-Authenticate", 'Bearer realm="edgeseq"'),) if status == 401 else ()
        return Answer(status, text + "\n", headers=auth)

    async def admit(
        self, path: str, query: dict[str, list[str]], headers: Any, peer: str, offered: list[str]
    ) -> Answer | Plan:
        """The answer to one HTTP request, or the plan of an accepted stream handshake.

        ``headers`` has ``get(name)`` and ``get_all(name)`` (``websockets``' ``Headers``);
        ``offered`` lists the WebSocket subprotocols the client offered.
        """
        if path == P.HEALTH_PATH:
            return Answer(200, "ok\n")
        if path == "/favicon.ico":
            return Answer(204, "")
        if path in ("/", "/index.html"):
            return Answer(200, self.service.page, "text/html; charset=utf-8")
        if path != P.STREAM_PATH and path not in self.service.endpoints:
            return self.refuse(404, f"no such path {path!r}; try {P.STREAM_PATH}", peer)
        if not self.service.options.token_ok(_token(headers)):
            return self.refuse(
                401, "missing or wrong token; send the header 'Authorization: Bearer <token>'", peer
            )
        if path in self.service.endpoints:
            return await self.service.endpoints[path](query)
        if self.service.stopping:
            return self.refuse(503, "the server is shutting down; resume in a moment", peer)
        fmt = query.get("format", ["json"])[0]
        if fmt not in ("json", "binary"):
            return self.refuse(400, f"format must be 'json' or 'binary', got {fmt!r}", peer)
        sub = P.SUBPROTOCOL if P.SUBPROTOCOL in offered else None
        if "resume" not in query:
            if len(self.service.pool) >= self.service.options.max_streams:
                return self.refuse(503, self._full(), peer)
            return Plan(fmt == "binary", sub)
        return await self._check_resume(query, headers, peer, Plan(fmt == "binary", sub))

    async def _check_resume(
        self, query: dict[str, list[str]], headers: Any, peer: str, plan: Plan
    ) -> Answer | Plan:
        sid = query["resume"][0]
        secret = headers.get(P.RESUME_HEADER)
        if not secret:
            return self.refuse(
                400, f"a resume needs the header {P.RESUME_HEADER}: <resume_token>", peer
            )
        try:
            acked = int(query.get("acked", ["-1"])[0])
        except ValueError:
            return self.refuse(400, "acked must be an integer seq", peer)
        found = await self._find(sid, peer)
        if isinstance(found, Answer):
            return found
        elsewhere = self.service.ownership is not None and found is None and valid_id(sid)
        if elsewhere and await self.service.ownership.owned_elsewhere(sid):  # type: ignore[union-attr]
            found = await self._take(sid, peer)  # opened there, its first save not yet written
            if isinstance(found, Answer):
                return found
        if found is None:
            why = self.service.registry.ended.get(
                sid, "unknown here (never opened, or its save was removed)"
            )
            return self.refuse(404, f"stream {sid[:8]}… is {why}; open a new stream", peer)
        if not hmac.compare_digest(found.token_sha256, token_hash(secret)):
            return self.refuse(403, f"wrong resume token for stream {sid[:8]}…", peer)
        if isinstance(found, StreamRecord) and found.leaving:
            return self.refuse(503, f"stream {sid[:8]}… is moving to another server; retry", peer)
        if self.service.ownership is not None and not isinstance(found, StreamRecord):
            found = await self._take(sid, peer)  # the owner saves it exactly, then lets go
            if isinstance(found, Answer):
                return found
        refusal = self._check_saved(sid, found, peer)
        if refusal is not None:
            if self.service.ownership is not None and not isinstance(found, StreamRecord):
                self.service.ownership.release(sid)
            return refusal
        return Plan(plan.binary, plan.subprotocol, (sid, found, acked), secret)

    async def _find(self, sid: str, peer: str) -> StreamRecord | Saved | Answer | None:
        try:
            return await asyncio.to_thread(self.service.registry.find, sid)
        except SnapshotError as exc:
            return self.refuse(409, f"stream {sid[:8]}: its save is unreadable ({exc})", peer)

    async def _take(self, sid: str, peer: str) -> StreamRecord | Saved | Answer:
        """Own ``sid`` (waiting for its holder to hand it over), then read its latest save."""
        assert self.service.ownership is not None
        if not await self.service.ownership.acquire(sid):
            return self.refuse(
                503, f"stream {sid[:8]}… is still held by another server; retry in a moment", peer
            )
        found = await self._find(sid, peer)
        if found is None or isinstance(found, Answer):
            self.service.ownership.release(sid)
        if found is None:
            return self.refuse(404, f"stream {sid[:8]}… has no save to resume from", peer)
        return found

    def _check_saved(self, sid: str, found: StreamRecord | Saved, peer: str) -> Answer | None:
        if isinstance(found, Saved) and found.snapshot.contract_hash != self.service.model_hash:
            return self.refuse(
                409,
                f"stream {sid[:8]}… was saved by a model with contract "
                f"{found.snapshot.contract_hash}; this server runs {self.service.model_hash}. "
                "Resume it on a server of that model.",
                peer,
            )
        in_pool = isinstance(found, StreamRecord) and found.pool_id is not None
        if not in_pool and len(self.service.pool) >= self.service.options.max_streams:
            return self.refuse(503, self._full(), peer)
        return None

    def _full(self) -> str:
        service = self.service
        held = service.registry.held()
        detached = sum(1 for r in held if r.owner is None and r.pool_id is not None)
        return (
            f"at capacity: {len(service.pool)} streams held "
            f"(max_streams={service.options.max_streams}, {detached} detached awaiting "
            "resume); retry later"
        )


def _token(headers: Any) -> str | None:
    """The bearer token from ``Authorization`` or a browser's token subprotocol."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for offered in headers.get_all("Sec-WebSocket-Protocol"):
        for proto in offered.split(","):
            proto = proto.strip()
            if proto.startswith(P.TOKEN_SUBPROTOCOL):
                raw = proto[len(P.TOKEN_SUBPROTOCOL) :]
                with contextlib.suppress(ValueError):
                    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    return None
