"""Who owns which stream, across the replicas of ``edgeseq serve --ray``: exclusive leases.

One :class:`Ledger` per application runs as a named Ray actor (``_ray_fleet`` starts it);
this module imports no Ray, so its rules are tested without a cluster. The rules:

* A replica may step, snapshot or save a stream only while it holds the stream's lease.
  It claims a lease before serving a stream and releases it when the stream leaves its
  memory (ended, handed over, or evicted into its save).
* A claim on a stream another live replica holds asks that replica to hand it over (it
  stops serving the stream, saves it exactly, releases it) and waits; the new owner then
  resumes the stream from that save.
* Leases are renewed by each replica's long poll (:meth:`Ledger.poll`, every ``beat``
  seconds). A replica not heard from for ``ttl`` seconds is presumed dead and its leases
  are void, so its streams resume elsewhere from their last saves. The replica itself
  counts its lease from when it *sent* the poll that renewed it, so its own view always
  lapses first: a replica cut off from the ledger stops touching its streams (and its
  saves are refused) before anyone else may take them.
* A restarted ledger (its process died; Ray restarts it with empty tables) grants no
  stream that existed before for one ``ttl``: replicas re-register what they hold first.

The ledger also tells replicas to stop (Serve is draining them: scale-down, redeploy,
shutdown) so they save every stream and end their connections with a resume notice, and
it gathers each replica's status and metrics for the fleet-wide ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LEDGER_NAMESPACE", "Ledger", "ledger_name"]

LEDGER_NAMESPACE = "edgeseq"


def ledger_name(app: str) -> str:
    """The named Ray actor of an application's ledger."""
    return f"edgeseq-ledger:{app}"


@dataclass(eq=False)
class _Replica:
    id: str
    last: float  # monotonic time the last poll or claim arrived
    held: set[str] = field(default_factory=set)
    wanted: set[str] = field(default_factory=set)  # held streams other replicas claim
    told: set[str] = field(default_factory=set)  # wanted streams it was told about
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stop: bool = False
    stop_told: bool = False
    status: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """The lease table of one application (see the module docstring).

    Parameters
    ----------
    ttl
        Seconds without a poll after which a replica's leases are void.
    beat
        Longest wait of a poll; replicas poll again at once, so this is the renewal period.
    restarted
        True when this ledger replaces one that died (its tables are lost): it waits one
        ``ttl`` before granting streams nobody re-registered.
    draining
        ``draining()`` -> ids of replicas the platform is stopping (polled twice a second).
    config
        Whatever the deployer stores for later (the application's build arguments).
    """

    def __init__(
        self,
        ttl: float = 5.0,
        beat: float = 1.0,
        restarted: bool = False,
        draining: Callable[[], set[str]] | None = None,
        config: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < beat < ttl / 2:
            raise ValueError(f"beat must be positive and under ttl/2, got {beat} and ttl {ttl}")
        self.ttl, self.beat, self.clock = ttl, beat, clock
        self.incarnation = secrets.token_hex(8)
        self.recovering_until = clock() + ttl if restarted else 0.0
        self.owners: dict[str, str] = {}
        self.replicas: dict[str, _Replica] = {}
        self.freed: dict[str, asyncio.Event] = {}  # stream -> set when its lease is released
        self.handovers = 0  # streams moved between live replicas
        self.expired = 0  # streams whose owner was presumed dead
        self.stopping_all = False
        self.report_epoch = 0
        self.draining = draining
        self.config = config
        self._watcher: asyncio.Task | None = None

    # ------------------------------------------------------------------ replicas
    async def poll(
        self,
        replica: str,
        incarnation: str | None,
        held: list[str] | None = None,
        released: list[str] | None = None,
        status: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Renew ``replica``'s leases, report its ``status``; wait up to ``beat`` for news.

        ``incarnation`` is what the last reply said (None at first); when it differs from
        this ledger's, the replica must send everything it ``held`` (the reply asks with
        ``resync``). Returns ``incarnation``, ``wanted`` (streams to hand over), ``stop``,
        ``lost`` (streams it may no longer serve) and ``report`` (the detail epoch asked).
        """
        self._start_watcher()
        now = self.clock()
        self._sweep(now)
        r = self.replicas.get(replica)
        lost: list[str] = []
        if incarnation != self.incarnation:
            if held is None:
                return {"incarnation": self.incarnation, "resync": True}
            r = self.replicas.setdefault(replica, _Replica(replica, now))
            for sid in held:
                owner = self.owners.get(sid)
                if owner in (None, replica):
                    self.owners[sid] = replica
                    r.held.add(sid)
                else:
                    lost.append(sid)  # granted elsewhere meanwhile: this replica must drop it
        elif r is None:  # presumed dead and swept: whatever it held may be elsewhere now
            r = self.replicas[replica] = _Replica(replica, now)
            lost = list(held or [])
        r.last = now
        self._release(r, released or ())
        if status is not None:
            r.status = status
        if not (lost or self._news(r, status)):
            r.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(r.wake.wait(), self.beat)
        stop = r.stop or self.stopping_all
        r.told |= r.wanted
        r.stop_told = r.stop_told or stop
        return {
            "incarnation": self.incarnation,
            "wanted": sorted(r.wanted),
            "stop": stop,
            "lost": lost,
            "report": self.report_epoch,
        }

    def _news(self, r: _Replica, status: dict[str, Any] | None) -> bool:
        """Whether ``r`` has something it was not told yet (its poll returns at once)."""
        stop = r.stop or self.stopping_all
        behind = status is not None and status.get("report", 0) < self.report_epoch
        return bool(r.wanted - r.told) or (stop and not r.stop_told) or behind

    async def claim(self, replica: str, stream: str, timeout: float, fresh: bool = False) -> bool:
        """Make ``replica`` the owner of ``stream``; wait for a live holder to hand it over
        (or to be presumed dead). False if that took longer than ``timeout`` seconds.

        ``fresh``: a stream id the replica just drew at random (nobody can hold it).
        """
        deadline = self.clock() + timeout
        while True:
            now = self.clock()
            r = self.replicas.setdefault(replica, _Replica(replica, now))
            r.last = max(r.last, now)  # a claim proves the claimer alive
            holder = self.owners.get(stream)
            if holder is not None and holder != replica and self._dead(holder, now):
                self._void(holder)
                holder = None
            recovering = holder is None and not fresh and now < self.recovering_until
            if holder in (None, replica) and not recovering:
                self.owners[stream] = replica
                r.held.add(stream)
                return True
            if holder is not None and holder != replica:
                h = self.replicas[holder]
                h.wanted.add(stream)
                h.wake.set()
            left = deadline - now
            if left <= 0:
                return False
            freed = self.freed.setdefault(stream, asyncio.Event())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(freed.wait(), min(left, self.ttl / 4))

    async def release(self, replica: str, streams: list[str]) -> None:
        """``replica`` no longer holds ``streams`` (a no-op for streams it did not hold)."""
        r = self.replicas.get(replica)
        if r is not None:
            self._release(r, streams)

    async def owner(self, stream: str) -> str | None:
        """The replica holding ``stream`` now (None: nobody, or a dead replica)."""
        holder = self.owners.get(stream)
        if holder is not None and self._dead(holder, self.clock()):
            return None
        return holder

    # ------------------------------------------------------------------ the fleet
    async def stop_all(self, timeout: float) -> dict[str, Any]:
        """Tell every replica to stop (save every stream, end its connections); wait until
        each live one reported that it stopped. What each reported."""
        self.stopping_all = True
        for r in self.replicas.values():
            r.wake.set()
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            live = [r for r in self.replicas.values() if not self._dead(r.id, self.clock())]
            if all(r.status.get("stopped") for r in live):
                break
            await asyncio.sleep(0.05)
        return await self.fleet()

    async def fleet(self, detail: bool = False, timeout: float = 10.0) -> dict[str, Any]:
        """Every live replica's latest status; ``detail`` first asks each for a fresh one
        with its per-stream counts (waits up to ``timeout`` seconds)."""
        if detail:
            self.report_epoch += 1
            epoch = self.report_epoch
            for r in self.replicas.values():
                r.wake.set()
            deadline = self.clock() + timeout
            while self.clock() < deadline:
                live = self._live()
                if all(r.status.get("report", 0) >= epoch for r in live):
                    break
                await asyncio.sleep(0.05)
        now = self.clock()
        return {
            "replicas": [
                {
                    **r.status,
                    "replica": r.id,
                    "owned": len(r.held),
                    "heard_s": round(now - r.last, 3),
                    "stopping": r.stop or self.stopping_all,
                }
                for r in self._live()
            ],
            "handovers": self.handovers,
            "expired": self.expired,
            "incarnation": self.incarnation,
        }

    async def get_config(self) -> Any:
        return self.config

    async def set_config(self, config: Any) -> None:
        self.config = config

    # ------------------------------------------------------------------ internals
    def _live(self) -> list[_Replica]:
        now = self.clock()
        return [r for r in self.replicas.values() if not self._dead(r.id, now)]

    def _dead(self, replica: str, now: float) -> bool:
        r = self.replicas.get(replica)
        return r is None or now - r.last > self.ttl

    def _void(self, replica: str) -> None:
        """Presume ``replica`` dead: its leases are free."""
        r = self.replicas.pop(replica, None)
        if r is None:
            return
        for sid in r.held:
            if self.owners.get(sid) == replica:
                del self.owners[sid]
                self.expired += 1
                self._freed(sid)

    def _sweep(self, now: float) -> None:
        for rid in [rid for rid in self.replicas if self._dead(rid, now)]:
            self._void(rid)

    def _release(self, r: _Replica, streams: Any) -> None:
        for sid in streams:
            if self.owners.get(sid) == r.id:
                del self.owners[sid]
                if sid in r.wanted:
                    self.handovers += 1
                self._freed(sid)
            r.held.discard(sid)
            r.wanted.discard(sid)
            r.told.discard(sid)

    def _freed(self, sid: str) -> None:
        event = self.freed.pop(sid, None)
        if event is not None:
            event.set()

    def _start_watcher(self) -> None:
        if self.draining is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Mark the replicas the platform is draining, so they stop by themselves."""
        assert self.draining is not None
        while True:
            try:
                ids = await asyncio.to_thread(self.draining)
            except Exception:  # the platform's API is unavailable: try again later
                ids = set()
            for rid in ids:
                r = self.replicas.get(rid)
                if r is not None and not r.stop:
                    r.stop = True
                    r.wake.set()
            await asyncio.sleep(0.5)
