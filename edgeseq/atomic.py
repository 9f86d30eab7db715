"""Atomic file writes, and the clean-up of temp files that interrupted writes left behind.

A write goes to a temp file in the target's folder, named ``.{name}.{host}-{pid}.{random}.tmp``,
is fsynced, renamed over the target, and the folder is fsynced: readers see the old file
or the new one, never half of either. A process killed mid-write leaves its temp file; the
next write to the same path removes the temp files whose writer is gone (same host, that
pid no longer running) or that are older than a day, never one a live writer may still
be filling.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "clean_stale"]

STALE_AFTER = 24 * 3600.0  # seconds: a temp file this old has no live writer
_LEGACY_SUFFIXES = (".part",)  # `{name}.part`, written by edgeseq checkpoints before 0.2


def _host() -> str:
    node = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
    return re.sub(r"[^A-Za-z0-9]", "", node)[:24] or "host"


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    Temp file in the same folder, fsync, ``os.replace``, then fsync the folder so the
    rename itself survives a power cut. Stale temp files of earlier, interrupted writes to
    ``path`` are removed first (see :func:`clean_stale`).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    clean_stale(path)
    import tempfile  # lazily: only writers pay for it (and for shutil, random)

    prefix = f".{path.name}.{_host()}-{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename durable
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove temp files that interrupted atomic writes to ``path`` left; return them.

    A temp file is stale when its writer (host and pid in its name) is this host and that
    process is gone, or when it is older than :data:`STALE_AFTER`. Files of live writers,
    and anything not named like our temp files, are left alone.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    ours = re.compile(
        rf"^\.{re.escape(path.name)}\.(?:(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)\.)?[^.]+\.tmp$"
    )
    legacy = {path.name + s for s in _LEGACY_SUFFIXES}
    try:
        names = [n for n in os.listdir(folder) if n in legacy or ours.match(n)]
    except OSError:
        return []
    removed = []
    host, now = _host(), time.time()
    for name in names:
        tmp = folder / name
        m = ours.match(name)
        gone = bool(m and m["host"] == host and not _running(int(m["pid"])))
        try:
            if gone or now - tmp.stat().st_mtime > STALE_AFTER:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # raced with another cleaner or its writer: leave it
            continue
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate it; age alone decides there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True
