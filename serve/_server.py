"""The ``edgeseq serve`` transport: a ``websockets`` asyncio server on one port, carrying the
HTTP endpoints and the stream handshakes of a :class:`~edgeseq.serve._service.StreamService`,
with signals and the graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from edgeseq.client import protocol as P
from edgeseq.runtime._session import ModelSource
from edgeseq.serve._options import ServeOptions, log_to_stderr
from edgeseq.serve._service import Answer, StreamService
from edgeseq.serve._socket import StreamSocket

__all__ = ["Server"]


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
        log: Callable[[str], None] = log_to_stderr,
    ) -> None:
        self.options = options or ServeOptions()
        self.log = log
        self.service = StreamService(model, self.options, log)
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
        self.service.start()
        self._ws_server = await serve(
            self._handle,
            o.host,
            o.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,  # frames are numbers: deflate costs CPU and saves little
            max_size=self.service.max_message,
            max_queue=o.max_inflight,
            ping_interval=20,
            ping_timeout=20,
            logger=_QuietLogger(),
            create_connection=StreamSocket,  # messages by callback (``_socket``)
        )
        self.port = self._ws_server.sockets[0].getsockname()[1]
        self.log(f"edgeseq serve: listening on {self.url}  (page: http://{o.host}:{self.port}/)")
        store = self.service.registry.store
        if store is None:
            self.log("  no --state-dir: streams live in memory only; a restart loses them")
        else:
            self.log(f"  state dir {store.folder}: {len(store.ids())} saved streams to resume")

    def request_stop(self, why: str = "stop") -> None:
        if self.service.stopping:
            self.log(f"{why}: already shutting down")
            return
        self.log(f"{why}: shutting down (saving every stream)")
        self.service.stopping = True
        assert self._stopped is not None
        self._stopped.set()

    async def shutdown(self) -> int:
        """Stop accepting, finish in-flight work, save every stream, close. 0 if all saved."""
        self.service.stopping = True
        self._ws_server.server.close()  # no new connections
        ok, n = await self.service.stop_streams()
        self.service.ticker.close()
        self.service.pool.shutdown()
        self._ws_server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ws_server.wait_closed(), 5)
        self.service.registry.close()
        store = self.service.registry.store
        if ok and store is not None:
            self.log(f"shutdown: every stream saved to {store.folder} ({n} detached)")
        return 0 if ok else 1

    # ------------------------------------------------------------------ HTTP + handshake
    def _select_subprotocol(self, conn: ServerConnection, offered: list[str]) -> str | None:
        return P.SUBPROTOCOL if P.SUBPROTOCOL in offered else None

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        offered = [
            p.strip()
            for line in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in line.split(",")
        ]
        got = await self.service.admit(
            url.path, parse_qs(url.query), request.headers, _peer(conn), offered
        )
        if isinstance(got, Answer):
            resp = conn.respond(got.status, got.body)
            del resp.headers["Content-Type"]  # a multi-dict: replace, don't add a second one
            resp.headers["Content-Type"] = got.content_type
            for name, value in got.headers:
                resp.headers[name] = value
            return resp
        conn.edgeseq_plan = got  # type: ignore[attr-defined]
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        await self.service.serve_stream(ws, ws.edgeseq_plan)  # type: ignore[attr-defined]


def _peer(conn: ServerConnection) -> str:
    addr = conn.remote_address or ("?", "?")
    return f"{addr[0]}:{addr[1]}"


class _QuietLogger:
    """websockets' own logging, kept out of the server's one-line-per-event log."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None

    def isEnabledFor(self, level: int) -> bool:
        return False
