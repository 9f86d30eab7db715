"""Which graph runs which frames of a call: fixed chunks, and the one-step graph beside them.

A fixed-chunk graph (the ``unrolled`` mode) computes all of its ``chunk`` frames on every
call, so one frame padded to a chunk of 8 costs eight. The exporter therefore writes a
one-step graph beside it (``MODEL.step.onnx``, named with its weights' digest in the
contract's ``model.extra["step_model"]``) with the same inputs, outputs and state pairs,
one frame per call. :func:`load_step_graph` opens and checks it; :func:`plan_calls` splits
a call of ``T`` frames into whole chunks plus a tail that runs one frame at a time through
the step graph when that costs less than one padded chunk (always, for a graph without a
``lengths`` input, which cannot mask padding).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgeseq.errors import ContractError, InputError

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine

__all__ = ["Call", "load_step_graph", "plan_calls"]

Call = tuple[int, int, bool]  # (first frame, frames, through the one-step graph)


def load_step_graph(engine: Engine, model: object, open_engine: Callable[[Path], Engine]):
    """The checked one-step :class:`Engine` named by ``engine``'s contract, or None.

    None when the contract names none, the model was given as bytes (no folder to look
    in), or the file is not beside the model (the step graph only saves time: without it
    shorter calls are padded). A step graph that is there but does not belong to the model
    (other weights, inputs or state) is refused with :class:`ContractError`.
    """
    ref = engine.contract.model.extra.get("step_model")
    if not isinstance(ref, dict) or not isinstance(model, (str, os.PathLike)):
        return None
    path = Path(model).with_name(str(ref.get("file", "")))
    if Path(model).suffix == ".ort" and path.with_suffix(".ort").is_file():
        path = path.with_suffix(".ort")  # `export --ort` converts the step graph too
    if not ref.get("file") or not path.is_file() or engine.context or engine.windows:
        return None  # left context and windows cut frames for one fixed graph
    step = open_engine(path)
    c, s = engine.contract, step.contract
    problems = []
    if s.producer.get("weights_sha256") != ref.get("weights_sha256"):
        problems.append(
            f"its weights digest {s.producer.get('weights_sha256')!r} is not the "
            f"{ref.get('weights_sha256')!r} the model names"
        )
    if s.model.chunk != 1:
        problems.append(f"it takes {s.model.chunk} frames per call, not 1")
    if [(p.input, p.output, p.shape, p.dtype) for p in s.states] != [
        (p.input, p.output, p.shape, p.dtype) for p in c.states
    ]:
        problems.append("its state pairs differ")
    same_frames = (s.frames.name, s.frames.dtype, s.frames.shape[2:]) == (
        c.frames.name,
        c.frames.dtype,
        c.frames.shape[2:],
    )
    if not same_frames or s.lengths != c.lengths or s.constants != c.constants:
        problems.append("its inputs differ")
    outs = [(o.name, o.dtype, o.batch_axis, o.time_axis) for o in s.data_outputs()]
    if outs != [(o.name, o.dtype, o.batch_axis, o.time_axis) for o in c.data_outputs()]:
        problems.append("its outputs differ")
    if problems:
        raise ContractError(
            f"{path} does not belong to {model}: {'; '.join(problems)}. Copy the step graph "
            "exported with this model, or delete it (shorter calls are then padded)."
        )
    return step


def plan_calls(
    total: int, frames: int | None, step: bool, can_pad: bool, offline: bool = False
) -> list[Call]:
    """Split ``total`` frames into graph calls.

    ``frames`` is the main graph's new frames per call (None: any number, one call);
    ``step`` says a one-step graph is loaded; ``can_pad`` that the main graph masks
    padding through ``lengths``; ``offline`` that a call is one whole sequence, which
    must fit in one graph call. A tail shorter than ``frames`` runs one frame at a time
    when it is at most half a chunk (each step call costs about one frame plus the fixed
    cost of a call, a padded chunk call the whole chunk), or when padding is impossible.
    """
    if not frames:
        return [(0, total, False)]
    if offline and total > frames:
        # an offline graph sees one whole sequence per call: splitting it would lose the
        # context between pieces (e.g. a bidirectional layer's backward pass)
        raise InputError(
            f"this offline graph takes one whole sequence of at most {frames} frames per "
            f"call; got {total}. Re-export with --chunk >= {total}, or use mode 'native'."
        )
    whole, tail = divmod(total, frames)
    calls: list[Call] = [(i * frames, frames, False) for i in range(whole)]
    if not tail:
        return calls
    if step and (2 * tail <= frames or not can_pad):
        return calls + [(whole * frames + i, 1, True) for i in range(tail)]
    if not can_pad:
        raise InputError(
            f"this graph takes exactly {frames} new frames per call and cannot mask padding; "
            f"got {total}. Pass a multiple of {frames} frames."
        )
    return [*calls, (whole * frames, tail, False)]
