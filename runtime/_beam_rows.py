"""How a beam search runs its decoder: every kept hypothesis as a row of one call per step,
or (where the contract does not allow a batch) one batch-1 call per hypothesis.

Both give each new hypothesis a handle to its decoder state and the log-probabilities of
its next token. :class:`RowSteps` gathers the parents' state rows into one slot of
``width`` rows (the unused rows repeat the first one), runs the decoder once on the
hypotheses' last tokens, and keeps the call's new state arrays; a hypothesis's handle is
its row in them. :class:`OneByOne` restores each parent's snapshot and steps it alone.

The rows path is taken only where it computes what the batch-1 path computes, bit for
bit: onnxruntime may pick other kernels for a batch (a decomposed cell's MatMul, say), and
a last-bit difference could reorder near-tied hypotheses. :func:`rows_agree` checks that
once per model and width (a probe call of ``width`` rows against ``width`` batch-1 calls
from the decoder's current state, which it leaves as it was) and remembers the answer.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.runtime.snapshot import Snapshot

__all__ = ["OneByOne", "RowSteps", "batchable", "log_softmax", "rows_agree"]

# engine -> {width: whether a call of that many rows computes each row as batch 1 does}
_AGREE: weakref.WeakKeyDictionary[Any, dict[int, bool]] = weakref.WeakKeyDictionary()


def log_softmax(logits: Any) -> np.ndarray:
    """The log-probabilities of one step's logits, in float32."""
    x = np.asarray(logits, np.float32).reshape(-1)
    x = x - x.max()
    return x - np.log(np.exp(x).sum(dtype=np.float32))


class OneByOne:
    """One batch-1 decoder call per hypothesis; a handle is the decoder's snapshot."""

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder

    def first(self, bos: int) -> tuple[Any, np.ndarray]:
        logp = log_softmax(self.decoder.step(np.int64(bos)))
        return self.decoder.snapshot(), logp

    def expand(self, items: Sequence[tuple[Any, int]]) -> list[tuple[Any, np.ndarray]]:
        out = []
        for snapshot, token in items:
            self.decoder.restore(snapshot)
            logp = log_softmax(self.decoder.step(np.int64(token)))
            out.append((self.decoder.snapshot(), logp))
        return out

    def finish(self, snapshot: Any) -> None:
        self.decoder.restore(snapshot)


def batchable(decoder: Any) -> bool:
    """Whether ``decoder`` (a :class:`StreamingPredictor`) can step hypotheses as rows of
    one call: a symbolic batch axis on its frames and every state, one frame per call
    (no windows, no left context, no fixed chunk without a one-step graph)."""
    engine = getattr(decoder, "engine", None)
    if engine is None or getattr(decoder, "pending", 0):
        return False
    spec = engine.contract.frames
    symbolic = spec.batch_axis is not None and isinstance(spec.shape[spec.batch_axis], str)
    states = all(isinstance(p.shape[p.batch_axis], str) for p in engine.pairs)
    return (
        symbolic
        and states
        and engine.windows is None
        and not engine.context
        and engine.graph_for(1).chunk in (None, 1)
    )


def rows_agree(decoder: Any, width: int, tokens: Sequence[int]) -> bool:
    """Whether one call of ``width`` rows gives each row's outputs and state exactly as a
    batch-1 call does, for ``decoder`` (primed; :func:`batchable`). Probed once per model
    and width, from the decoder's current state with ``tokens`` (cycled over the rows);
    the decoder is left as it was."""
    known = _AGREE.setdefault(decoder.engine, {})
    if width in known:
        return known[width]
    before = decoder.snapshot()
    rows = RowSteps(decoder, width)
    start = _Row([before.states[n] for n in rows.names], 0, before.frames_seen)
    items = [(start, int(tokens[i % len(tokens)])) for i in range(width)]
    try:
        together = rows.expand(items)
        alone = OneByOne(decoder).expand([(before, t) for _, t in items])
    finally:
        decoder.restore(before)
    same = all(
        np.array_equal(logp, logp1)
        and all(
            np.array_equal(np.take(a, [row.row], axis=ax), snap.states[n])
            for n, a, ax in zip(rows.names, row.states, rows.axes)
        )
        for (row, logp), (snap, logp1) in zip(together, alone)
    )
    known[width] = same
    return same


@dataclass
class _Row:
    states: list[np.ndarray]  # one call's state arrays, one per pair (batch = that call's)
    row: int
    frames_seen: int


class RowSteps:
    """The hypotheses of a beam of ``width`` as rows of one decoder call per step."""

    def __init__(self, decoder: Any, width: int) -> None:
        self.decoder = decoder
        self.engine = engine = decoder.engine
        self.names = [p.input for p in engine.pairs]
        self.axes = [p.batch_axis for p in engine.pairs]
        self.width = int(width)
        self.slot = engine.slot(self.width)

    def first(self, bos: int) -> tuple[_Row, np.ndarray]:
        logp = log_softmax(self.decoder.step(np.int64(bos)))
        snap = self.decoder.snapshot()
        return _Row([snap.states[n] for n in self.names], 0, snap.frames_seen), logp

    def expand(self, items: Sequence[tuple[_Row, int]]) -> list[tuple[_Row, np.ndarray]]:
        if not items:
            return []
        rows = [*items, *[items[0]] * (self.width - len(items))]  # a full slot: one shape
        states = [
            np.concatenate([np.take(h.states[i], [h.row], axis=ax) for h, _ in rows], axis=ax)
            for i, ax in enumerate(self.axes)
        ]
        check = self.decoder._frames.check  # each token as the predictor would take it
        x = np.stack([check(np.int64(token))[0] for _, token in rows])  # (width, 1, ...)
        self.slot.load(states)
        outs = self.engine.run(x, None, self.slot)
        new = self.slot.read()
        return [
            (_Row(new, r, h.frames_seen + 1), log_softmax(self.engine.extract(outs, r, 1, True)))
            for r, (h, _) in enumerate(items)
        ]

    def finish(self, handle: _Row) -> None:
        """Leave the decoder in the state of ``handle``."""
        states = {
            n: np.take(a, [handle.row], axis=ax)
            for n, a, ax in zip(self.names, handle.states, self.axes)
        }
        self.decoder.restore(Snapshot(self.engine.hash, states, handle.frames_seen))
