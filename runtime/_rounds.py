"""Long calls in rounds: at most ``cap`` frames of a stream per batched call.

A stream's long chunk must not hold every other stream of its batch hostage: one 50k-frame
row would pad the whole call to 50k frames, and one 300k-frame ``submit`` would hold the
worker for its whole length. :class:`~edgeseq.runtime.StreamPool` therefore runs at most
``max_frames_per_call`` frames of a stream per batched call and carries the remainder to
the next round (``step``: within the call; ``submit``: the next batch, shared with other
streams). A stream's outputs are the rounds' outputs joined, as one call would give them;
a failure in a later round puts the stream back where it was before the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.errors import InputError

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine, Outputs
    from edgeseq.runtime._streams import Stream

__all__ = ["frames_cap", "join", "run_in_rounds"]

Item = tuple[Any, "Stream", np.ndarray, bool]  # (stream id, stream, chunk [T, ...], single)


def frames_cap(max_frames_per_call: int | None, engine: Engine) -> int | None:
    """The cap in force: None when off, or for graphs whose calls cannot be split exactly
    (offline graphs, models edgeseq did not export); a multiple of a fixed-chunk graph's
    frames per call."""
    value = max_frames_per_call
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InputError(f"max_frames_per_call must be a positive int or None, got {value!r}.")
    if value is None or not engine.budget.exact_pieces:
        return None
    step = engine.step_frames or 1
    return -(-value // step) * step


def join(engine: Engine, parts: Sequence[Outputs]) -> Outputs:
    """One row's outputs of consecutive calls, as one call over all their frames gives them:
    time axes concatenated; outputs without a time axis from the last call."""
    if len(parts) == 1:
        return parts[0]

    def one(spec: Any, arrs: list[np.ndarray]) -> np.ndarray:
        t = spec.time_axis
        if t is None:
            return arrs[-1]
        if spec.batch_axis is not None and spec.batch_axis < t:
            t -= 1  # a row's outputs have no batch axis
        return np.concatenate(arrs, axis=t)

    if isinstance(parts[0], dict):
        return {s.name: one(s, [p[s.name] for p in parts]) for s in engine.data_outputs}  # type: ignore[index]
    return one(engine.data_outputs[0], list(parts))  # type: ignore[arg-type]


def run_in_rounds(
    run: Callable[[list[Item]], list[Outputs]],
    save: Callable[[list[Stream]], Any],
    restore: Callable[[list[Stream], Any], None],
    engine: Engine,
    items: list[Item],
    cap: int,
) -> list[Outputs]:
    """``run`` the items round by round, at most ``cap`` frames of each per round; join each
    item's outputs. All or nothing: a failure ``restore`` s every stream as ``save`` d."""
    streams = [st for _, st, _, _ in items]
    saved = save(streams)
    parts: list[list[Outputs]] = [[] for _ in items]
    try:
        start = 0
        while True:
            live = [i for i, item in enumerate(items) if len(item[2]) > start]
            if not live:
                break
            pieces = [
                (items[i][0], items[i][1], items[i][2][start : start + cap], items[i][3])
                for i in live
            ]
            for i, out in zip(live, run(pieces)):
                parts[i].append(out)
            start += cap
    except BaseException:
        restore(streams, saved)
        raise
    return [join(engine, p) for p in parts]
