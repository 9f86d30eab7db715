"""Results of the pool's worker thread handed to the event loop, one wakeup per batch.

``asyncio.wrap_future`` wakes the loop once per future (a ``call_soon_threadsafe`` and a
self-pipe write each); a batch of 256 streams resolves 256 futures at once. Here the
worker's done-callbacks queue the results and only the first schedules a drain.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any

__all__ = ["Completions"]


class Completions:
    """``watch(concurrent_future)`` -> an asyncio future on ``loop`` with the same outcome."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: deque[tuple[Future, asyncio.Future]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def watch(self, fut: Future) -> asyncio.Future:
        waiter = self.loop.create_future()
        fut.add_done_callback(lambda f: self._done(f, waiter))
        return waiter

    def _done(self, fut: Future, waiter: asyncio.Future) -> None:  # the worker's thread
        self._ready.append((fut, waiter))
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:  # the loop
        with self._lock:
            self._scheduled = False
        while self._ready:
            fut, waiter = self._ready.popleft()
            if waiter.cancelled():
                continue
            exc: Any = fut.exception()
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(fut.result())
