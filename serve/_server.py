"""The transport: a ``websockets`` asyncio server, its HTTP endpoints, the handshake checks
(token, capacity, resume), background saves, and the graceful shutdown."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import signal
import sys
import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from edgeseq.client import protocol as P
from edgeseq.errors import EdgeseqError, SnapshotError, StreamError
from edgeseq.runtime import StreamPool
from edgeseq.runtime._session import ModelSource
from edgeseq.serve._completions import Completions
from edgeseq.serve._connection import Connection
from edgeseq.serve._frames import WireFormat
from edgeseq.serve._metrics import CONTENT_TYPE, Metrics
from edgeseq.serve._options import ServeOptions
from edgeseq.serve._registry import Registry, StreamRecord
from edgeseq.serve._store import Saved, StateStore, token_hash

__all__ = ["Server"]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Server:
    """``edgeseq serve``: one model, one shared :class:`StreamPool`, many WebSocket streams.

    Examples
    --------
    >>> server = Server("model.onnx", ServeOptions(port=0, state_dir="state"))
    >>> server.run()        # blocks; SIGTERM/SIGINT save every stream and return 0
    """

    def __init__(
        self,
        model: ModelSource,
        options: ServeOptions | None = None,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        self.options = o = options or ServeOptions()
        self.log = log
        self.connections: set[Connection] = set()
        self.metrics = Metrics(lambda: len(self.pool), lambda: len(self.connections))
        self.pool = StreamPool(
            model,
            max_streams=o.max_streams,
            device=o.device,
            threads=o.threads,
            idle_timeout=o.idle_timeout,
            max_batch=o.max_batch,
            max_wait_ms=o.max_wait_ms,
            on_evict=lambda pool_id, snap: self.registry.on_evict(pool_id, snap),
            on_batch=self.metrics.on_batch,
        )
        self.wire = WireFormat(self.pool.engine)
        self.contract_json = self.pool.contract.to_json()
        self.model_hash = self.pool.engine.hash
        store = StateStore(o.state_dir, self.model_hash) if o.state_dir is not None else None
        self.registry = Registry(
            self.pool, store, o.max_inflight, log, lambda r: self.metrics.saves.labels(r).inc()
        )
        self.page = resources.files("edgeseq.serve").joinpath("page.html").read_text("utf-8")
        # the largest text message is a restore: a snapshot in base64, with room to spare
        snap = len(self.pool.snapshot(self.pool.open()).to_bytes())
        self.pool.close(0)
        frames = o.max_frames_per_message * self.wire.features * 8
        self.max_message = max(1 << 20, 2 * frames, 4 * snap)
        self.stopping = False
        self._stopped: asyncio.Event | None = None
        self._ws_server: Any = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.options.host}:{self.port}{P.STREAM_PATH}"

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then shut down gracefully; the exit status."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        assert self._stopped is not None
        await self._stopped.wait()
        return await self.shutdown()

    async def start(self) -> None:
        o = self.options
        self._stopped = asyncio.Event()
        self.completions = Completions(asyncio.get_running_loop())
        self._ws_server = await serve(
            self._handle,
            o.host,
            o.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,  # frames are numbers: deflate costs CPU and saves little
            max_size=self.max_message,
            max_queue=o.max_inflight,
            ping_interval=20,
            ping_timeout=20,
            logger=_QuietLogger(),
        )
        self.port = self._ws_server.sockets[0].getsockname()[1]
        self.log(f"edgeseq serve: listening on {self.url}  (page: http://{o.host}:{self.port}/)")
        store = self.registry.store
        if store is None:
            self.log("  no --state-dir: streams live in memory only; a restart loses them")
        else:
            self.log(f"  state dir {store.folder}: {len(store.ids())} saved streams to resume")
        self._tasks = [asyncio.create_task(self._housekeeping())]

    def request_stop(self, why: str = "stop") -> None:
        if self.stopping:
            self.log(f"{why}: already shutting down")
            return
        self.log(f"{why}: shutting down (saving every stream)")
        self.stopping = True
        assert self._stopped is not None
        self._stopped.set()

    async def shutdown(self) -> int:
        """Stop accepting, finish in-flight work, save every stream, close. 0 if all saved."""
        self.stopping = True
        self._ws_server.server.close()  # no new connections
        for task in self._tasks:
            task.cancel()
        ok, n = True, 0

        async def save_all() -> int:
            await asyncio.gather(*(c.stop("final") for c in list(self.connections)))
            n = await self._save_detached("shutdown")
            await asyncio.to_thread(self.registry.flush)
            return n

        try:
            n = await asyncio.wait_for(save_all(), self.options.shutdown_timeout)
        except (asyncio.TimeoutError, EdgeseqError, OSError) as exc:
            ok = False
            self.log(f"shutdown: could not save every stream ({type(exc).__name__}: {exc})")
        self.pool.shutdown()
        self._ws_server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ws_server.wait_closed(), 5)
        self.registry.close()
        if ok and self.registry.store is not None:
            self.log(f"shutdown: every stream saved to {self.registry.store.folder} ({n} detached)")
        return 0 if ok else 1

    # ------------------------------------------------------------------ background
    async def _housekeeping(self) -> None:
        """Evict idle streams (the pool saves them through its hook) and save changed
        streams every ``save_interval`` seconds."""
        o = self.options
        tick = min(1.0, (o.idle_timeout or 4.0) / 4, o.save_interval or 1.0)
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            if o.idle_timeout is not None:
                await asyncio.to_thread(self.pool.evict_idle)
            due = o.save_interval and time.monotonic() - last_save >= o.save_interval
            if self.registry.store is not None and due:
                last_save = time.monotonic()
                await self._save_detached("periodic")
                for rec in self.registry.held():
                    if rec.owner is not None and _changed(rec):
                        rec.owner.request_save("periodic")

    async def _save_detached(self, reason: str) -> int:
        """Save changed streams no connection serves (their state cannot move meanwhile)."""
        if self.registry.store is None:
            return 0
        futures = []
        for rec in self.registry.held():
            if rec.owner is None and _changed(rec):
                snap = await asyncio.to_thread(self.registry.snapshot_of, rec)
                futures.append(self.registry.save(rec, snap, reason))
        for f in futures:
            await asyncio.wrap_future(f)
        return len(futures)

    # ------------------------------------------------------------------ HTTP + handshake
    def _select_subprotocol(self, conn: ServerConnection, offered: list[str]) -> str | None:
        return P.SUBPROTOCOL if P.SUBPROTOCOL in offered else None

    def _token(self, request: Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        for offered in request.headers.get_all("Sec-WebSocket-Protocol"):
            for proto in offered.split(","):
                proto = proto.strip()
                if proto.startswith(P.TOKEN_SUBPROTOCOL):
                    raw = proto[len(P.TOKEN_SUBPROTOCOL) :]
                    with contextlib.suppress(ValueError):
                        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        return None

    def _refuse(self, conn: ServerConnection, status: int, text: str) -> Response:
        reason = P.HTTP_REFUSALS.get(status, "bad_request")
        self.metrics.refused.labels(reason).inc()
        self.log(f"refuse {status} {reason:<12} peer={_peer(conn)}: {text}")
        resp = conn.respond(status, text + "\n")
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="edgeseq"'
        return resp

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path, query = url.path, parse_qs(url.query)
        if path == P.HEALTH_PATH:
            return conn.respond(200, "ok\n")
        if path == "/favicon.ico":
            return conn.respond(204, "")
        if path in ("/", "/index.html"):
            return _typed(conn.respond(200, self.page), "text/html; charset=utf-8")
        if path not in (P.STREAM_PATH, P.MODEL_PATH, P.METRICS_PATH):
            return self._refuse(conn, 404, f"no such path {path!r}; try {P.STREAM_PATH}")
        if not self.options.token_ok(self._token(request)):
            return self._refuse(
                conn, 401, "missing or wrong token; send the header 'Authorization: Bearer <token>'"
            )
        if path == P.MODEL_PATH:
            return _typed(conn.respond(200, self.contract_json), "application/json")
        if path == P.METRICS_PATH:
            return _typed(conn.respond(200, self.metrics.render().decode()), CONTENT_TYPE)
        if self.stopping:
            return self._refuse(conn, 503, "the server is shutting down; resume in a moment")
        fmt = query.get("format", ["json"])[0]
        if fmt not in ("json", "binary"):
            return self._refuse(conn, 400, f"format must be 'json' or 'binary', got {fmt!r}")
        conn.edgeseq_binary = fmt == "binary"  # type: ignore[attr-defined]
        if "resume" not in query:
            if len(self.pool) >= self.options.max_streams:
                return self._refuse(conn, 503, self._full())
            conn.edgeseq_plan = None  # type: ignore[attr-defined]
            return None
        return await self._check_resume(conn, request, query)

    async def _check_resume(
        self, conn: ServerConnection, request: Request, query: dict
    ) -> Response | None:
        sid = query["resume"][0]
        secret = request.headers.get(P.RESUME_HEADER)
        if not secret:
            return self._refuse(
                conn, 400, f"a resume needs the header {P.RESUME_HEADER}: <resume_token>"
            )
        try:
            acked = int(query.get("acked", ["-1"])[0])
        except ValueError:
            return self._refuse(conn, 400, "acked must be an integer seq")
        try:
            found = await asyncio.to_thread(self.registry.find, sid)
        except SnapshotError as exc:
            return self._refuse(conn, 409, f"stream {sid[:8]}: its save is unreadable ({exc})")
        if found is None:
            why = self.registry.ended.get(
                sid, "unknown here (never opened, or its save was removed)"
            )
            return self._refuse(conn, 404, f"stream {sid[:8]}… is {why}; open a new stream")
        if not hmac.compare_digest(found.token_sha256, token_hash(secret)):
            return self._refuse(conn, 403, f"wrong resume token for stream {sid[:8]}…")
        if isinstance(found, Saved) and found.snapshot.contract_hash != self.model_hash:
            return self._refuse(
                conn,
                409,
                f"stream {sid[:8]}… was saved by a model with contract "
                f"{found.snapshot.contract_hash}; this server runs {self.model_hash}. Resume it "
                "on a server of that model.",
            )
        in_pool = isinstance(found, StreamRecord) and found.pool_id is not None
        if not in_pool and len(self.pool) >= self.options.max_streams:
            return self._refuse(conn, 503, self._full())
        conn.edgeseq_plan = (sid, found, acked)  # type: ignore[attr-defined]
        return None

    def _full(self) -> str:
        detached = sum(1 for r in self.registry.held() if r.owner is None and r.pool_id is not None)
        return (
            f"at capacity: {len(self.pool)} streams held (max_streams={self.options.max_streams}, "
            f"{detached} detached awaiting resume); retry later"
        )

    # ------------------------------------------------------------------ connections
    async def _handle(self, ws: ServerConnection) -> None:
        plan = getattr(ws, "edgeseq_plan", None)
        binary = getattr(ws, "edgeseq_binary", False)
        if plan is None:
            try:
                rec, token = await asyncio.to_thread(self.registry.create)
            except StreamError as exc:  # filled up since the handshake
                self.metrics.refused.labels("unavailable").inc()
                await ws.close(1013, str(exc)[:120])
                return
            kind, first, info = "new", [], "new"
            ready = self._ready(rec, token)
            if self.registry.store is not None:
                snap = await asyncio.to_thread(self.registry.snapshot_of, rec)
                self.registry.save(rec, snap, "opened")
        else:
            sid, found, acked = plan
            rec = found if isinstance(found, StreamRecord) else self.registry.adopt(sid, found)
            if rec.owner is not None:
                await rec.owner.stop("handover")
            kind = "saved" if rec.restored is not None else "live"
            restored, rec.restored = rec.restored, None
            first = [p for s, p in rec.replies if s > acked] if acked >= 0 else []
            ready = self._ready(
                rec, ws.request.headers[P.RESUME_HEADER], kind, restored, len(first)
            )
            info = f"resumed ({kind}) at seq {rec.seq}"
            if restored:
                when = time.strftime("%H:%M:%S", time.localtime(restored.saved_at))
                info += f", saved {restored.reason} at {when}"
        conn = Connection(self, ws, rec, binary)
        self.registry.attach(rec, conn)
        self.connections.add(conn)
        self.metrics.connects.labels(kind).inc()
        self.log(f"open   stream={rec.id[:8]} peer={conn.peer} {info}")
        try:
            await conn.run([P.encode(ready), *first])
        finally:
            self.connections.discard(conn)
            done = f"{conn.outcome} (seq {rec.seq}, {rec.frames} frames)"
            self.log(f"close  stream={rec.id[:8]} peer={conn.peer} {done}")

    def _ready(
        self,
        rec: StreamRecord,
        token: str,
        kind: str | None = None,
        restored: Saved | None = None,
        redeliver: int = 0,
    ) -> P.Ready:
        w = self.wire
        return P.Ready(
            stream=rec.id,
            resume_token=token,
            features=w.features,
            dtype=w.dtype,
            outputs=w.describe(),
            window=w.window,
            max_frames=self.options.max_frames_per_message,
            frame_shape=list(w.trailing),
            seq=rec.seq,
            frames=rec.frames,
            resumed=kind,
            reason=restored.reason if restored else None,
            saved_at=restored.saved_at if restored else None,
            saved=rec.saved if self.registry.store is not None else None,
            redeliver=redeliver,
        )


def _changed(rec: StreamRecord) -> bool:
    return rec.saved is None or rec.seq > rec.saved


def _typed(resp: Response, content_type: str) -> Response:
    del resp.headers["Content-Type"]  # a multi-dict: replace, don't add a second one
    resp.headers["Content-Type"] = content_type
    return resp


def _peer(conn: ServerConnection) -> str:
    addr = conn.remote_address or ("?", "?")
    return f"{addr[0]}:{addr[1]}"


class _QuietLogger:
    """websockets' own logging, kept out of the server's one-line-per-event log."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None

    def isEnabledFor(self, level: int) -> bool:
        return False
