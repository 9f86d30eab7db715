"""Left context only where the model needs it: never on a model whose state holds its past.

Left context (``context=N``, CLI ``--context N``) prepends the last ``N`` frames of the
previous call to each call and trims their outputs. A model with a stateless front-end
(a convolution over raw samples, Silero VAD's STFT) needs it: without it each call starts
that front-end from nothing. A model whose state already holds every frame it has seen
(an RNN, an edgeseq export with its conv caches) must not get it: the frames would be
fed a second time, and every output after the first call would be wrong.

:func:`check_context` decides before the first call, when the caller asks for context the
contract does not record. The model carries its past in its state when

- its contract was written by an edgeseq exporter (they carry recurrent state and conv
  caches, and record any context a model takes in ``model.extra["context"]``), or
- it streams exactly without context: one random stream of ``2n`` frames in one call and
  in two calls of ``n``, carrying the state pairs from the contract's initial state (what
  a stream starts from; the JavaScript runtime probes the same way), ends in the same
  states and gives the same outputs. A model that differs needs something the state does
  not carry, and context may be it; the check is then silent, as it is when it cannot
  run the model.

A model whose documentation asks for context on top of its state records it once in its
contract (``edgeseq inspect MODEL --context N --write-contract OUT.onnx``): a recorded
context is the model author's word and is not second-guessed, and a caller's context
that differs from it is refused (:func:`settle_context`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgeseq.contract import Contract, GraphIO
from edgeseq.errors import InputError
from edgeseq.runtime._frames import FrameSpec
from edgeseq.runtime._probe import Layout, Probe, _close, _run_pieces, _Runner

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine

__all__ = ["check_context", "settle_context"]


def settle_context(contract: Contract, frames: FrameSpec, context: int | None) -> int:
    """The left context to run with: the caller's, else the contract's (default 0).

    A caller's context that differs from one the contract records is refused: the
    recorded one is what the model was exported or stored with."""
    recorded = contract.model.extra.get("context")
    if context is None:
        context = int(recorded or 0)
    if not isinstance(context, int) or isinstance(context, bool) or context < 0:
        raise InputError(f"context must be a non-negative int of frames, got {context!r}.")
    if recorded is not None and context != recorded:
        raise InputError(
            f"context={context}: this model's contract records {recorded} frames of left "
            f"context; expected that or none, got {context}. Drop the context to use the "
            "recorded one; for another, store it once: edgeseq inspect MODEL --context N "
            "--write-contract OUT.onnx"
        )
    if context and not frames.fixed:
        raise InputError(
            f"context={context} needs frames of a fixed shape, but the model's frames "
            f"input has symbolic trailing axes {frames.trailing}."
        )
    return context


def check_context(engine: Engine, gin: Sequence[GraphIO], probe: Probe | None) -> None:
    """Raise :class:`InputError` if ``engine``'s left context would re-feed frames its
    state already holds; see the module docstring."""
    c, n_ctx = engine.contract, engine.context
    if not n_ctx or n_ctx == c.model.extra.get("context"):
        return
    if engine.windows is not None and engine.windows.framed:
        return  # the context is part of each frame, as the graph takes it
    if not c.model.stateful or not engine.pairs:
        return
    exporter = c.producer.get("exporter", "")
    if exporter and exporter != "external":
        why = (
            "edgeseq exported it: its exports carry every past frame a layer needs in "
            "their state and record any context they take"
        )
    else:
        why = _exact_without_context(engine, gin, probe)
        if why is None:
            return
    raise InputError(
        f"context={n_ctx}: expected no left context for this model, because it carries its "
        f"past in its state ({why}); got {n_ctx} frames, which would feed it again the "
        f"last {n_ctx} frames its state already holds, so every output after the first "
        "call would be wrong. Stream it without left context. If its documentation says it "
        f"takes {n_ctx} frames of context on top of its state, record that once: edgeseq "
        f"inspect MODEL --context {n_ctx} --write-contract OUT.onnx"
    )


def _exact_without_context(
    engine: Engine, gin: Sequence[GraphIO], probe: Probe | None
) -> str | None:
    """Why the model streams exactly without context, or None (it does not, or it could
    not be run in pieces: a fixed chunk, a lengths input, no time axis)."""
    c = engine.contract
    f = c.frames
    if c.lengths is not None or f.time_axis is None or c.model.chunk:
        return None
    initial = engine.initial(1)  # what a stream starts from: the contract's initial state
    if probe is not None and probe.run_state is not None:
        run = lambda pairs, pieces: probe.run_state(pairs, pieces, 0, initial)  # noqa: E731
        n = probe.sizes[0] if probe.sizes else 4
    else:
        shape = [d if isinstance(d, int) else None for d in f.shape]
        graph = [GraphIO(g.name, shape, g.dtype) if g.name == f.name else g for g in gin]
        r = _Runner(engine.session, graph, f.name, engine.constants)
        r.layout = Layout(f.batch_axis, f.time_axis)
        run = lambda pairs, pieces: _run_pieces(r, pairs, pieces, 0, initial)  # noqa: E731
        n = 4
    names = [(p.input, p.output) for p in engine.pairs]
    try:
        whole_states, whole = run(names, [2 * n])
        cut_states, cut = run(names, [n, n])
    except Exception:  # onnxruntime's own errors: inconclusive
        return None
    if not all(_close(a, b) for a, b in zip(cut_states, whole_states)):
        return None
    for spec in engine.data_outputs:
        one = whole[0][spec.name]
        if spec.time_axis is None:
            two = cut[-1][spec.name]  # the output after the same last frame
        else:
            two = np.concatenate([cut[0][spec.name], cut[1][spec.name]], axis=spec.time_axis)
        if not _close(two, one):
            return None
    return (
        f"{2 * n} frames in one call and in two calls of {n} without context end in the same "
        "state with the same outputs"
    )
