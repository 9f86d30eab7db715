"""One replica's side of the ledger (``_ledger``): claims, releases, and the long poll that
renews its leases and brings orders (hand a stream over, stop, report).

:class:`LeaseHolder` is the :class:`~edgeseq.serve._service.Ownership` of a
:class:`~edgeseq.serve._service.StreamService` running as a Ray Serve replica. ``link`` is
anything with the ledger's async methods (``poll``, ``claim``, ``release``, ``owner``): the
Ray actor behind ``_ray_replica.LedgerLink``, or a :class:`~edgeseq.serve._ledger.Ledger`
itself in tests. The lease is counted from when the renewing poll was *sent*, so this
replica's view lapses before the ledger's: once it lapses, :meth:`guard` refuses every save
and the replica drops its streams (they resume elsewhere from their last saves).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgeseq.errors import StreamError

if TYPE_CHECKING:
    from edgeseq.serve._service import StreamService

__all__ = ["LeaseHolder"]

_MARGIN = 0.9  # of the ttl: room for clocks that run at slightly different rates


class LeaseHolder:
    """Claims and renews this replica's stream leases (see the module docstring)."""

    def __init__(
        self,
        replica: str,
        link: Any,
        ttl: float,
        claim_timeout: float,
        log: Callable[[str], None],
    ) -> None:
        self.replica = replica
        self.link = link
        self.ttl = ttl
        self.claim_timeout = claim_timeout
        self.log = log
        self.valid_until = 0.0  # monotonic
        self.incarnation: str | None = None
        self.held: set[str] = set()
        self.stopping = False
        self.stopped = False
        self.report = 0  # the detail epoch last reported
        self._want_report = 0
        self._lock = threading.Lock()
        self._released: list[str] = []
        self._flushing = False
        self._tasks: list[asyncio.Task] = []
        self._service: StreamService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status: Callable[[bool], dict[str, Any]] = lambda detail: {}
        self.failure: BaseException | None = None

    # ------------------------------------------------------------------ Ownership
    async def acquire(self, stream_id: str, fresh: bool = False) -> bool:
        sent = time.monotonic()
        try:
            ok = await self.link.claim(self.replica, stream_id, self.claim_timeout, fresh)
        except Exception as exc:  # the ledger is unreachable: the client retries (503)
            self.log(f"lease  claim of {stream_id[:8]} failed: {type(exc).__name__}: {exc}")
            return False
        if ok:
            with self._lock:
                self.held.add(stream_id)
            self.valid_until = max(self.valid_until, sent + self.ttl * _MARGIN)
        return bool(ok)

    async def owned_elsewhere(self, stream_id: str) -> bool:
        try:
            holder = await self.link.owner(stream_id)
        except Exception:
            return False
        return holder is not None and holder != self.replica

    def release(self, stream_id: str) -> None:
        """The stream left memory (any thread): give its lease back soon."""
        with self._lock:
            self.held.discard(stream_id)
            self._released.append(stream_id)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._flush_soon)

    def holds(self, stream_id: str) -> bool:
        with self._lock:
            return stream_id in self.held

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def guard(self, stream_id: str) -> None:
        """Before a save (the state folder's guard): only while this replica owns it."""
        if not self.valid():
            raise StreamError(
                f"not saving stream {stream_id[:8]}: this replica's lease lapsed (no word from "
                f"the ledger for {self.ttl:g} s); its streams resume elsewhere from their saves."
            )
        if not self.holds(stream_id):
            raise StreamError(
                f"not saving stream {stream_id[:8]}: another replica owns it now (its save "
                "there is the newer one)."
            )

    # ------------------------------------------------------------------ running
    def start(self, service: StreamService, status: Callable[[bool], dict[str, Any]]) -> None:
        """Begin polling on the running loop; ``status(detail)`` is what each poll reports."""
        self._service, self._status = service, status
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._watchdog())]

    async def stop(self) -> None:
        """Save every stream, end its connections with a resume notice, give every lease
        back (a drain by the platform, or the fleet's shutdown)."""
        if self.stopping:
            while not self.stopped:
                await asyncio.sleep(0.05)
            return
        self.stopping = True
        service = self._service
        assert service is not None
        ok, n = await service.stop_streams()
        await service.abandon(None, "")  # saved: now forget them, which releases their leases
        await self._flush()
        self.stopped = True
        self.log(f"stop   every stream saved ({n} detached)" if ok else "stop   some not saved")

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _poll(self) -> None:
        while True:
            sent = time.monotonic()
            with self._lock:
                released, self._released = self._released, []
                held = sorted(self.held) if self.incarnation is None else None
            detail = self._want_report > self.report
            status = {**self._status(detail), "stopped": self.stopped}
            status["report"] = self._want_report if detail else self.report
            try:
                reply = await self.link.poll(self.replica, self.incarnation, held, released, status)
            except Exception as exc:  # the ledger restarts, or is unreachable: keep trying
                with self._lock:
                    self._released[:0] = released
                self.log(f"lease  poll failed ({type(exc).__name__}); retrying")
                with contextlib.suppress(Exception):
                    self.link.reset()
                await asyncio.sleep(0.25)
                continue
            if detail:
                self.report = self._want_report
            if reply.get("resync"):
                self.incarnation = None
                continue
            self.incarnation = reply["incarnation"]
            self.valid_until = max(self.valid_until, sent + self.ttl * _MARGIN)
            self._act(reply)

    def _act(self, reply: dict[str, Any]) -> None:
        service = self._service
        assert service is not None
        if reply["lost"]:
            self._spawn(service.abandon(set(reply["lost"]), "its lease went to another replica"))
        for sid in reply["wanted"]:
            self._spawn(service.hand_over(sid))
        if reply["stop"] and not self.stopping:
            self.log("stop   asked to stop: saving every stream")
            self._spawn(self.stop())
        self._want_report = max(self._want_report, reply.get("report", 0))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.log(f"lease  task failed: {type(exc).__name__}: {exc}")

    async def _watchdog(self) -> None:
        """Drop every stream once the lease lapsed (it may be granted elsewhere by now)."""
        service = self._service
        assert service is not None
        while True:
            await asyncio.sleep(min(0.25, self.ttl / 8))
            if self.held and not self.valid() and not self.stopped:
                self.log("lease  lapsed: dropping every stream (they resume elsewhere)")
                await service.abandon(None, "this replica lost its lease")

    def _flush_soon(self) -> None:
        if not self._flushing:
            self._spawn(self._flush())

    async def _flush(self) -> None:
        self._flushing = True
        try:
            while True:
                with self._lock:
                    batch, self._released = self._released, []
                if not batch:
                    return
                try:
                    await self.link.release(self.replica, batch)
                except Exception:  # the next poll carries them
                    with self._lock:
                        self._released[:0] = batch
                    return
        finally:
            self._flushing = False
