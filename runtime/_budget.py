"""How much memory one onnxruntime call may take, and how long inputs stay within it.

onnxruntime's CPU arena keeps the high-water mark of every call for the life of the
session: one 10^6-frame chunk would hold hundreds of MB for good. So a call's working
memory is bounded by :data:`CALL_BYTES`, estimated per frame-row from the contract (frame
and output values, plus four gate activations per state value):

- edgeseq's stateful graphs (native and unrolled exports, where a call over ``a + b``
  frames equals a call over ``a`` then ``b`` with the state carried, bit for bit) run a
  long input as pieces of at most :meth:`CallBudget.frames` frames per row
  (:meth:`CallBudget.bound`; fixed-chunk graphs run chunk by chunk anyway);
- other graphs cannot be split without changing their outputs (a third-party model may
  pool over time), so an oversized call runs whole, with onnxruntime's arena-shrinkage run
  option, which gives back what the call grew the arena by once it returns.

Preallocated call plans are built only for shapes within the budget, and for one frame
per row at any batch: what such a call needs grows with its rows only, which the caller
holds as state anyway (a pool's table), and unplanned it would allocate its outputs and
copy the state on every call (a 4,096-row LSTM pool: planned calls measured about 0.8×
the time and a 30 MB lower peak RSS).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import onnxruntime as ort

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine
    from edgeseq.runtime._steps import Call

__all__ = ["CALL_BYTES", "CallBudget"]

CALL_BYTES = 32 << 20  # onnxruntime working memory per call, about (outputs not counted)
_GATES = 4  # activations per state value in one step (an LSTM has four gates)


class CallBudget:
    """The memory bound of one engine's calls: piece sizes and oversized-call options."""

    def __init__(self, engine: Engine, limit: int = CALL_BYTES) -> None:
        c = engine.contract
        self.limit = limit
        self.row_bytes = _row_bytes(engine)  # estimated bytes per frame of one row
        ours = "edgeseq" in c.producer and c.model.mode in ("native", "unrolled")
        # a call may be split into consecutive calls, with the state carried, bit for bit
        self.exact_pieces = ours and c.model.stateful
        self.splittable = self.exact_pieces and not engine.step_frames  # fixed chunks: already
        shrink = "cpu:0" if engine.device.memory == "cpu" else f"cpu:0;gpu:{engine.device.index}"
        self.shrink = ort.RunOptions()
        self.shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", shrink)

    def frames(self, batch: int) -> int:
        """Frames per row that fit the budget at ``batch`` rows (at least one)."""
        return max(1, self.limit // (batch * self.row_bytes))

    def bound(self, calls: list[Call], batch: int) -> list[Call]:
        """``calls`` (see :func:`._steps.plan_calls`) with every call of more frames than the
        budget allows at ``batch`` rows split into consecutive pieces (splittable graphs)."""
        if not self.splittable:
            return calls
        most = self.frames(batch)
        if all(n <= most for _, n, _ in calls):
            return calls
        return [
            (start + k, min(most, n - k), one) for start, n, one in calls for k in range(0, n, most)
        ]

    def oversized(self, batch: int, frames: int) -> bool:
        return batch * frames * self.row_bytes > self.limit

    def plannable(self, batch: int, frames: int) -> bool:
        """Whether calls of ``frames`` frames over ``batch`` rows may keep a bound plan."""
        return frames == 1 or not self.oversized(batch, frames)


def _row_bytes(engine: Engine) -> int:
    def per_row(shape: list, skip: tuple[int | None, ...]) -> int:
        return math.prod(
            d if isinstance(d, int) else 1 for ax, d in enumerate(shape) if ax not in skip
        )

    frame = math.prod(d or 1 for d in engine.frames.trailing_ints)
    outs = sum(per_row(s.shape, (s.batch_axis, s.time_axis)) for s in engine.data_outputs)
    state = sum(per_row(p.shape, (p.batch_axis,)) for p in engine.pairs)
    return 4 * (frame + outs + _GATES * state)
