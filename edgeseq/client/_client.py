"""StreamClient: one stream on an ``edgeseq serve`` server, stepped like a local predictor.

Synchronous (``websockets.sync``): ``step`` sends one message and waits for its reply. The
client counts ``seq`` (state-changing messages acknowledged) and frames, and keeps every
message the server has not yet saved durably, so a resume is exact: replies the server
applied but the client never got are re-delivered, and when the server came back from a
save (its ``resumed`` notice says at which frame) the client resends what it holds since
(and says so with a :class:`ResumeWarning`). That covers a restarted ``edgeseq serve`` and
a stream moved to another replica of ``edgeseq serve --ray`` alike.
"""

from __future__ import annotations

import time
import urllib.request
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from edgeseq.client import protocol as P
from edgeseq.client._transport import Op, _Connection, _Lost
from edgeseq.contract import Contract
from edgeseq.errors import InputError, RemoteError

__all__ = ["ResumeInfo", "ResumeWarning", "StreamClient", "load_tokens"]


class ResumeWarning(UserWarning):
    """A stream resumed from a save older than the client's last reply: held messages replayed."""


@dataclass(frozen=True)
class ResumeInfo:
    """What a resume found: where the server's state was, and what the client did."""

    kind: str  # "live" (server kept it in memory) or "saved" (from its state folder)
    server_seq: int  # state-changing messages the server had applied
    client_seq: int  # messages this client had replies for
    replayed: int  # messages re-sent from the client's hold (server came back from a save)
    redelivered: int  # replies the server re-sent (applied, but not received)
    reason: str | None = None  # why the server saved it: shutdown, idle, periodic, opened, handover
    saved_at: float | None = None
    frames: int | None = None  # frames in the state the server resumed from (its notice)


class StreamClient(_Connection):
    """Stream frames to an ``edgeseq serve`` server: ``step``, ``reset``, ``snapshot``, resume.

    Parameters
    ----------
    url
        ``ws://HOST:PORT/v1/stream`` (a bare ``ws://HOST:PORT`` gets the path added).
    token
        Bearer token, when the server has ``--token-file``.
    stream, resume_token
        Resume this stream (from an earlier client's :attr:`stream_id` and
        :attr:`resume_token`) instead of opening a new one.
    timeout
        Seconds to wait for one reply.
    resume_within
        On a dropped connection or a server shutdown, keep trying to resume for this
        many seconds (0: raise :class:`~edgeseq.errors.RemoteError` at once).

    Examples
    --------
    >>> with StreamClient("ws://127.0.0.1:8765/v1/stream") as c:
    ...     y = c.step(frame)             # [F] -> [out], like StreamingPredictor.step
    ...     ys = c.step(chunk)            # [T, F] -> [T, out]
    ...     saved = c.snapshot()          # Snapshot bytes (edgeseq.runtime.Snapshot.from_bytes)
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        stream: str | None = None,
        resume_token: str | None = None,
        timeout: float = 30.0,
        resume_within: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise RemoteError(f"expected a ws:// or wss:// URL, got {url!r}")
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path or P.STREAM_PATH, "", ""))
        self.token = token
        self.timeout = timeout
        self.resume_within = resume_within
        self._ws: Any = None
        self._held: deque[tuple[int, int, Op]] = deque()  # (seq, frames before, op) unsaved
        self._contract: Contract | None = None
        self.seq = 0  # state-changing messages acknowledged
        self.frames = 0  # frames acknowledged
        self.saved: int | None = None
        self.resumes: list[ResumeInfo] = []
        if stream is None:
            self.ready = self._connect({})
            self.stream_id, self.resume_token = self.ready.stream, self.ready.resume_token
        else:
            if not resume_token:
                raise RemoteError("resuming a stream needs its resume_token")
            self.stream_id, self.resume_token = stream, resume_token
            self.seq = -1  # unknown: take the server's
            self.resume()

    # ------------------------------------------------------------------ calls
    def step(self, frames: Any) -> np.ndarray | dict[str, np.ndarray]:
        """Step the stream; ``[F]`` → ``[out]``, ``[T, F]`` → ``[T, out]``; dict by name if
        the model has several outputs (time-less outputs: one row)."""
        data, t = P.encode_frames(frames, self.ready.dtype, self.ready.features)
        single = np.ndim(frames) == len(self.ready.frame_shape)
        reply = self._call(("frames", data, t))
        assert isinstance(reply, P.Outputs)
        out = {}
        for spec in self.ready.output_specs:
            rows = np.asarray(reply.outputs[spec.name], dtype=spec.dtype)
            if not rows.size and None not in spec.shape:  # no row (a window not yet complete)
                rows = rows.reshape(0, *spec.shape)  # type: ignore[arg-type]
            out[spec.name] = rows[0] if single or not spec.time else rows
        return next(iter(out.values())) if len(out) == 1 else out

    def reset(self) -> None:
        """Back to the model's initial state."""
        self._call(("reset",))

    def snapshot(self) -> bytes:
        """The stream's state as :meth:`edgeseq.runtime.Snapshot.to_bytes` bytes."""
        reply = self._call(("snapshot",))
        assert isinstance(reply, P.SnapshotMsg)
        return P.b64decode(reply.data)

    def restore(self, data: bytes) -> None:
        """Continue from snapshot bytes (from :meth:`snapshot` or a local predictor)."""
        self._call(("restore", P.b64encode(bytes(data))))

    def close(self) -> int | None:
        """End the stream (the server forgets it); the total frames it stepped."""
        if self._ws is None:
            return None
        try:
            self._ws.send(P.encode(P.End()))
            while True:
                msg = self._recv()
                if isinstance(msg, P.End):
                    return msg.frames
        except (_Lost, RemoteError):
            return None
        finally:
            self._drop()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def contract(self) -> Contract:
        """The model's contract, from ``GET /v1/model`` (fetched once)."""
        if self._contract is None:
            parts = urlsplit(self.url)
            scheme = "https" if parts.scheme == "wss" else "http"
            req = urllib.request.Request(urlunsplit((scheme, parts.netloc, P.MODEL_PATH, "", "")))
            if self.token:
                req.add_header("Authorization", f"Bearer {self.token}")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    self._contract = Contract.from_json(resp.read().decode())
            except OSError as exc:
                raise RemoteError(
                    f"cannot read the model's contract from {req.full_url} ({exc})"
                ) from None
        return self._contract

    # ------------------------------------------------------------------ exactness
    def _call(self, op: Op) -> P.Message:
        for _ in range(100):
            try:
                if self._ws is None:
                    raise _Lost("not connected")
                reply = self._exchange(op)
            except _Lost as lost:
                if self.resume_within <= 0:
                    raise RemoteError(
                        f"the connection to {self.url} was lost ({lost}); call resume() to "
                        "continue the stream exactly"
                    ) from None
                redelivered = self._resume_retrying(op)
                if redelivered is not None:
                    return redelivered
                continue
            return reply
        raise RemoteError("the stream kept losing its connection; giving up")  # pragma: no cover

    def _exchange(self, op: Op) -> P.Message:
        self._send(op)
        reply = self._recv()
        if isinstance(reply, P.Error):
            raise RemoteError(
                f"the server refused the message: {reply.message}", reason=reply.reason
            )
        self._acknowledge(op, reply)
        return reply

    def _acknowledge(self, op: Op, reply: Any) -> None:
        self.saved = getattr(reply, "saved", None)
        if op[0] != "snapshot":  # a state-changing message: keep it until a save covers it
            self.seq = reply.seq if getattr(reply, "seq", None) is not None else self.seq + 1
            before = self.frames
            self.frames += op[2] if op[0] == "frames" else 0
            if self.saved is not None:
                self._held.append((self.seq, before, op))
        if self.saved is not None:
            while self._held and self._held[0][0] <= self.saved:
                self._held.popleft()

    def _resume_retrying(self, pending: Op) -> P.Message | None:
        deadline = time.monotonic() + self.resume_within
        while True:
            try:
                return self.resume(pending)
            except _Lost:
                if time.monotonic() > deadline:
                    raise RemoteError(f"lost the connection to {self.url} while resuming") from None
            except RemoteError as exc:
                if exc.status not in (None, 503) or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def resume(self, pending: Op | None = None) -> Any:
        """Reconnect to this stream and bring it exactly to where this client is.

        Returns the reply of ``pending`` if the server had applied it (internal use);
        :attr:`resumes` records what each resume did.
        """
        self._drop()
        query = {"resume": self.stream_id}
        if self.seq >= 0:
            query["acked"] = str(self.seq)
        ready = self._connect(query)
        k, a = ready.seq, self.seq
        redelivered = [self._recv() for _ in range(ready.redeliver)]
        notice = self._recv() if ready.resumed == "saved" else None  # from a save: at frame K
        if notice is not None and not isinstance(notice, P.Resumed):
            raise RemoteError(f"expected the server's 'resumed' notice, got {notice.type!r}")
        result = None
        replayed = 0
        if a < 0:
            self.seq, a, self.frames = k, k, ready.frames
        if k > a:  # applied, reply lost in transit: the server re-sent it
            if k - a != len(redelivered) or pending is None or pending[0] == "snapshot":
                raise RemoteError(
                    f"stream {self.stream_id}: the server applied {k - a} message(s) whose replies "
                    f"this client never got and it re-sent {len(redelivered)}; the outputs between "
                    f"seq {a} and {k} are lost (the state is intact at seq {k})."
                )
            result = redelivered[-1]
            self._acknowledge(pending, result)
        elif k < a:  # the server came back from an older save: resend what this client holds
            need = [(f0, op) for s, f0, op in self._held if s > k]
            start = notice.frames if notice is not None else need[0][0] if need else -1
            if len(need) != a - k or need[0][0] != start:
                raise RemoteError(
                    f"stream {self.stream_id}: the server resumed from its {ready.reason} save at "
                    f"seq {k} (frame {start}), but this client holds only {len(need)} of the "
                    f"{a - k} messages sent since; those frames are lost. Start a new stream or "
                    "restore a snapshot."
                )
            self.seq, self.frames = k, start
            for _, op in need:
                self._exchange(op)
                replayed += 1
            warnings.warn(
                ResumeWarning(
                    f"stream {self.stream_id}: the server lost its last {a - k} message(s) (it "
                    f"resumed from its {ready.reason} save at seq {k}, frame {start}, "
                    f"{time.ctime(ready.saved_at) if ready.saved_at else '?'}); resent them "
                    "from this client's hold, so the stream continues exactly."
                ),
                stacklevel=2,
            )
        elif notice is not None and notice.frames != self.frames:
            raise RemoteError(
                f"stream {self.stream_id}: the server resumed at frame {notice.frames} and seq "
                f"{k}, but this client counted {self.frames} frames at that seq; the two disagree."
            )
        self.resumes.append(
            ResumeInfo(
                ready.resumed or "live",
                k,
                a,
                replayed,
                len(redelivered),
                ready.reason,
                ready.saved_at,
                notice.frames if notice is not None else None,
            )
        )
        return result


def load_tokens(path: str | Path) -> tuple[str, ...]:
    """Tokens from a file: one per line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot read the token file {str(path)!r} ({exc.strerror or exc}); expected a "
            "text file with one token per line."
        ) from None
    tokens = tuple(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise InputError(
            f"the token file {str(path)!r} holds no token; expected one token per line "
            "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
        )
    return tokens
