"""The state folder: one snapshot file per stream, written atomically, read on resume.

``<state-dir>/<stream id>.snap`` is a :class:`~edgeseq.runtime.Snapshot` (``.npz`` + JSON
header, never pickle) whose ``meta`` holds what the server needs to resume the stream:
the SHA-256 of its resume token (never the token), its ``seq`` and frame counts, why and
when it was saved, and the last replies sent (so a server that resumes it elsewhere can
re-deliver a reply lost with the one that saved it). Files are replaced atomically, so a
crash mid-write keeps the previous save; a finished stream's file is deleted.

Several servers may share one folder (``edgeseq serve --ray``: a shared filesystem); a
``guard`` then runs before every save and refuses it unless this server owns the stream
(see ``_ownership``), so a server that lost a stream can never overwrite its newer save.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edgeseq.errors import InputError, SnapshotError
from edgeseq.runtime import Snapshot

__all__ = ["SUFFIX", "Saved", "StateStore", "token_hash", "valid_id"]

SUFFIX = ".snap"
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # secrets.token_urlsafe: never a path


def valid_id(stream_id: str) -> bool:
    """Whether ``stream_id`` could be one of ours (checked before it touches a path)."""
    return bool(_ID.match(stream_id))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Saved:
    """A stream as saved: its snapshot and the server's bookkeeping."""

    snapshot: Snapshot
    token_sha256: str
    seq: int
    frames: int
    reason: str  # "shutdown", "idle", "periodic", "opened" or "handover"
    saved_at: float
    replies: tuple[tuple[int, str | bytes], ...] = ()  # (seq, reply): the last ones sent


class StateStore:
    """Reads and writes stream snapshots in one folder (created if missing)."""

    def __init__(
        self,
        folder: str | Path,
        contract_hash: str,
        guard: Callable[[str], None] | None = None,
    ) -> None:
        self.guard = guard  # guard(stream_id) raises when this server may not write it
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".edgeseq-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(
                f"--state-dir {str(folder)!r} is not a writable folder ({exc.strerror or exc}); "
                "expected a folder the server may create files in."
            ) from None
        self.contract_hash = contract_hash

    def path(self, stream_id: str) -> Path:
        if not valid_id(stream_id):
            raise InputError(f"not a stream id: {stream_id[:40]!r}")
        return self.folder / f"{stream_id}{SUFFIX}"

    def save(
        self,
        stream_id: str,
        snap: Snapshot,
        token_sha256: str,
        seq: int,
        frames: int,
        reason: str,
        replies: Iterable[tuple[int, str | bytes]] = (),
    ) -> Saved:
        if self.guard is not None:
            self.guard(stream_id)
        kept = tuple((int(s), r) for s, r in replies)
        meta = {
            "edgeseq.serve": 1,
            "stream": stream_id,
            "token_sha256": token_sha256,
            "seq": int(seq),
            "frames": int(frames),
            "reason": reason,
            "saved_at": time.time(),
            "replies": [_reply_json(s, r) for s, r in kept],
        }
        snap = dataclasses.replace(snap, meta=meta)
        snap.save(self.path(stream_id))
        return Saved(snap, token_sha256, int(seq), int(frames), reason, meta["saved_at"], kept)

    def load(self, stream_id: str) -> Saved | None:
        """The saved stream, or None if there is no file for it."""
        path = self.path(stream_id)
        if not path.exists():
            return None
        snap = Snapshot.load(path)
        meta = snap.meta
        try:
            return Saved(
                snap,
                str(meta["token_sha256"]),
                int(meta["seq"]),
                int(meta["frames"]),
                str(meta["reason"]),
                float(meta["saved_at"]),
                tuple(_reply_value(r) for r in meta.get("replies", ())),
            )
        except (KeyError, TypeError, ValueError, IndexError):
            raise SnapshotError(
                f"{path} is a snapshot but not one saved by edgeseq serve (its meta lacks the "
                "resume fields); expected a file the server wrote. Remove it."
            ) from None

    def delete(self, stream_id: str) -> None:
        """Remove a finished stream's save (its last owner ended it: not guarded)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(stream_id).unlink()

    def ids(self) -> list[str]:
        return sorted(
            p.name[: -len(SUFFIX)]
            for p in self.folder.glob(f"*{SUFFIX}")
            if valid_id(p.name[: -len(SUFFIX)])
        )


def _reply_json(seq: int, reply: str | bytes) -> list:
    if isinstance(reply, bytes):
        return [seq, "b", base64.b64encode(reply).decode("ascii")]
    return [seq, "t", reply]


def _reply_value(item: list) -> tuple[int, str | bytes]:
    seq, kind, data = item
    return int(seq), base64.b64decode(data) if kind == "b" else str(data)
