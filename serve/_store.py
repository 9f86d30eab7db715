"""The state folder: one snapshot file per stream, written atomically, read on resume.

``<state-dir>/<stream id>.snap`` is a :class:`~edgeseq.runtime.Snapshot` (``.npz`` + JSON
header, never pickle) whose ``meta`` holds what the server needs to resume the stream:
the SHA-256 of its resume token (never the token), its ``seq`` and frame counts, why and
when it was saved. Files are replaced atomically, so a crash mid-write keeps the previous
save; a finished stream's file is deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import time
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
    reason: str  # "shutdown", "idle", "periodic" or "opened"
    saved_at: float


class StateStore:
    """Reads and writes stream snapshots in one folder (created if missing)."""

    def __init__(self, folder: str | Path, contract_hash: str) -> None:
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
        self, stream_id: str, snap: Snapshot, token_sha256: str, seq: int, frames: int, reason: str
    ) -> Saved:
        meta = {
            "edgeseq.serve": 1,
            "stream": stream_id,
            "token_sha256": token_sha256,
            "seq": int(seq),
            "frames": int(frames),
            "reason": reason,
            "saved_at": time.time(),
        }
        snap = dataclasses.replace(snap, meta=meta)
        snap.save(self.path(stream_id))
        return Saved(snap, token_sha256, int(seq), int(frames), reason, meta["saved_at"])

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
            )
        except (KeyError, TypeError, ValueError):
            raise SnapshotError(
                f"{path} is a snapshot but not one saved by edgeseq serve (its meta lacks the "
                "resume fields); expected a file the server wrote. Remove it."
            ) from None

    def delete(self, stream_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(stream_id).unlink()

    def ids(self) -> list[str]:
        return sorted(
            p.name[: -len(SUFFIX)]
            for p in self.folder.glob(f"*{SUFFIX}")
            if valid_id(p.name[: -len(SUFFIX)])
        )
