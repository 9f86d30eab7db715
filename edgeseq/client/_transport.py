"""The websocket under a :class:`~edgeseq.client.StreamClient`: connect, send, receive, drop.

One connection to ``edgeseq serve``'s stream endpoint, with the bearer token and, on a
resume, the stream's resume token as headers; ops go out as the protocol's messages and
every reply is decoded. A connection that ends without a reply (dropped, or the server
shutting down) raises :class:`_Lost`, which the client above turns into a resume. Nothing
here counts messages or frames: that exactness lives in :mod:`._client`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from typing import Any
from urllib.parse import urlencode

from edgeseq.client import protocol as P
from edgeseq.errors import ProtocolError, RemoteError

Op = tuple  # ("frames", bytes, T) | ("reset",) | ("restore", b64) | ("snapshot",)


class _Lost(Exception):
    """The connection ended without the reply (dropped, or the server is shutting down)."""


def _import_websockets() -> Any:
    try:
        from websockets.sync import client
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "StreamClient needs the websockets package: pip install 'edgeseq[client]'",
            name="websockets",
        ) from None
    return client


class _Connection:
    """The websocket of one stream; :class:`~edgeseq.client.StreamClient` builds on it."""

    url: str
    token: str | None
    timeout: float
    resume_token: str
    ready: P.Ready
    saved: int | None  # the last save the server reported (a shutdown's end says it too)
    _ws: Any  # websockets.sync connection, or None when not connected

    def _connect(self, query: dict[str, str]) -> P.Ready:
        client = _import_websockets()
        from websockets.exceptions import InvalidStatus

        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if "resume" in query:
            headers[P.RESUME_HEADER] = self.resume_token
        url = self.url + ("?" + urlencode(query) if query else "")
        # websockets >= 17 asks for the direct (non context-manager) form to be explicit
        legacy = (
            {"legacy": True} if "legacy" in inspect.signature(client.connect).parameters else {}
        )
        try:
            self._ws = client.connect(
                url,
                **legacy,
                additional_headers=headers,
                open_timeout=self.timeout,
                max_size=None,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else ""
            raise RemoteError(f"{self.url}: HTTP {status}: {body}", status=status) from None
        except OSError as exc:
            raise RemoteError(f"cannot connect to {self.url} ({exc})") from None
        ready = self._recv()
        if not isinstance(ready, P.Ready):
            raise RemoteError(f"expected a 'ready' message first, got {ready.type!r}")
        self.ready = ready
        return ready

    def _send(self, op: Op) -> None:
        from websockets.exceptions import ConnectionClosed

        kind = op[0]
        try:
            if kind == "frames":
                self._ws.send(op[1])
            elif kind == "restore":
                self._ws.send(P.encode(P.Restore(op[1])))
            else:
                self._ws.send(json.dumps({"type": kind}))
        except ConnectionClosed as exc:
            raise _Lost(str(exc)) from None

    def _recv(self) -> P.Message:
        from websockets.exceptions import ConnectionClosed

        try:
            text = self._ws.recv(timeout=self.timeout)
        except ConnectionClosed as exc:
            raise _Lost(str(exc)) from None
        except TimeoutError:
            raise RemoteError(f"no reply from {self.url} within {self.timeout} s") from None
        try:
            msg = P.decode(text, "server")
        except ProtocolError as exc:
            raise RemoteError(f"the server sent a message this client cannot read: {exc}") from None
        if isinstance(msg, P.End) and msg.reason == "shutdown":
            self.saved = msg.saved
            raise _Lost("the server is shutting down")
        return msg

    def _drop(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
