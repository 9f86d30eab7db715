"""The same endpoints over ASGI: how a :class:`~edgeseq.serve._service.StreamService` is
reached through an ASGI server (Ray Serve's HTTP proxy hands each replica ASGI messages).

:class:`AsgiApp` answers HTTP requests and WebSocket handshakes with the service's
decisions (a refused handshake is a real HTTP status, through ASGI's denial-response
extension) and :class:`AsgiSocket` gives an accepted WebSocket the few methods the
service's connections use, as the ``websockets`` server does for ``edgeseq serve``.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qs

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError

from edgeseq.serve._service import Answer, StreamService

__all__ = ["AsgiApp", "AsgiSocket"]

CLOSE_TOO_BIG = 1009


class AsgiSocket:
    """An accepted ASGI WebSocket with the interface of a ``websockets`` connection."""

    def __init__(self, receive: Any, send: Any, peer: tuple[str, int] | None, max_size: int):
        self._receive, self._send = receive, send
        self.remote_address = peer or ("?", 0)
        self.max_size = max_size
        self.closed = False

    @property
    def transport(self) -> AsgiSocket:
        return self  # ``transport.abort()``

    def abort(self) -> None:
        self.closed = True  # later sends fail at once

    def __aiter__(self) -> AsgiSocket:
        return self

    async def __anext__(self) -> str | bytes:
        while not self.closed:
            msg = await self._receive()
            kind = msg["type"]
            if kind == "websocket.receive":
                data = msg.get("bytes")
                data = msg.get("text", "") if data is None else data
                if len(data) > self.max_size:
                    await self.close(CLOSE_TOO_BIG, "message too big")
                    break
                return data
            if kind == "websocket.disconnect":
                self.closed = True
        raise StopAsyncIteration

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise ConnectionClosedError(None, None)
        key = "bytes" if isinstance(message, (bytes, bytearray)) else "text"
        try:
            await self._send({"type": "websocket.send", key: message})
        except Exception:  # the peer is gone (each ASGI server raises its own type)
            self.closed = True
            raise ConnectionClosedError(None, None) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})


class AsgiApp:
    """An ASGI application over ``service`` (HTTP endpoints and ``/v1/stream``)."""

    def __init__(self, service: StreamService) -> None:
        self.service = service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        headers = Headers(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        )
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "?"
        if kind == "http":
            if scope.get("method", "GET") not in ("GET", "HEAD"):
                await _respond(send, Answer(405, "only GET is served here\n"), "http")
                return
            got = await self.service.admit(scope["path"], query, headers, peer, [])
            if not isinstance(got, Answer):  # a plain GET of the stream path
                got = Answer(426, "this path is a WebSocket endpoint; connect with ws://\n")
            await _respond(send, got, "http")
            return
        if kind != "websocket":
            return
        if (await receive())["type"] != "websocket.connect":
            return
        offered = list(scope.get("subprotocols") or [])
        got = await self.service.admit(scope["path"], query, headers, peer, offered)
        if isinstance(got, Answer):
            await _respond(send, got, "websocket.http")
            return
        await send({"type": "websocket.accept", "subprotocol": got.subprotocol})
        ws = AsgiSocket(receive, send, tuple(client) if client else None, self.service.max_message)
        await self.service.serve_stream(ws, got)
        await ws.close()


async def _respond(send: Any, answer: Answer, prefix: str) -> None:
    headers = [(b"content-type", answer.content_type.encode())]
    headers += [(k.encode(), v.encode()) for k, v in answer.headers]
    await send({"type": f"{prefix}.response.start", "status": answer.status, "headers": headers})
    await send({"type": f"{prefix}.response.body", "body": answer.body.encode()})
