"""A mutex for the per-frame hot path.

Entering and leaving it uncontended costs two atomic list operations (``list.pop`` and
``list.append`` are atomic under the GIL, and per object in free-threaded builds): about
0.15 µs against 0.5-0.9 µs for a ``threading.Lock`` as measured on our test machines.
Hot paths inline the two operations::

    try:
        gate.free.pop()          # take the one token
    except IndexError:
        gate.wait_turn()         # taken: wait for it
    try:
        ...
    finally:
        gate.free.append(True)   # give it back
        if gate.waiting:
            gate.wake()

Other code uses ``with gate:``.

The condition variable is made when a thread first finds the gate taken, so a process
that steps from one thread never imports :mod:`threading` for it (~0.2 MB on a device);
a process with a second thread has imported it already.
"""

from __future__ import annotations

import _thread
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from types import TracebackType

__all__ = ["Gate"]

_MAKING = _thread.allocate_lock()  # guards the first making of a gate's condition


class Gate:
    """One thread at a time; threads that find it taken wait on a condition variable."""

    __slots__ = ("_cond", "free", "waiting")

    def __init__(self) -> None:
        self.free = [True]  # one token: whoever popped it is inside
        self.waiting = 0
        self._cond: threading.Condition | None = None  # made by the first waiter

    def _condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            import threading

            with _MAKING:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(threading.Lock())
        return cond

    def wait_turn(self) -> None:
        """Block until the token is ours (after a failed ``free.pop()``)."""
        cond = self._condition()
        with cond:
            self.waiting += 1  # before the retry: a leaving thread then wakes us
            try:
                while True:
                    try:
                        self.free.pop()
                        return
                    except IndexError:
                        cond.wait()
            finally:
                self.waiting -= 1

    def wake(self) -> None:
        cond = self._condition()  # made already: a waiter counted itself in under it
        with cond:
            cond.notify()

    def __enter__(self) -> None:
        try:
            self.free.pop()
        except IndexError:
            self.wait_turn()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.free.append(True)
        if self.waiting:
            self.wake()
