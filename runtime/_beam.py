"""Beam search over any streaming token decoder, streamed as its hypotheses agree.

Each hypothesis holds the decoder's state (recurrent state, and for an attention decoder
its memory) after its last token, so the search works for every cell, layout and topology
the predictor streams: as rows of one decoder call per step where the contract allows a
batch, else as snapshots stepped one by one (:mod:`._beam_rows`). The tokens every live
hypothesis shares are final: they are yielded as soon as the hypotheses agree on them,
and the rest of the best hypothesis when the search ends.

Hypotheses are ranked by their total log-probability divided by GNMT's length penalty
``((5 + length) / 6) ** alpha`` (Wu et al. 2016), where ``length`` counts the scored
tokens (EOS included once an output has ended). ``alpha = 0`` ranks by the total
log-probability itself; as every token's log-probability is negative, that favours short
outputs, and a larger ``alpha`` lets longer ones win.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from edgeseq.errors import InputError
from edgeseq.runtime._beam_rows import OneByOne, RowSteps, batchable, rows_agree

__all__ = ["beam_tokens", "check_beam_options", "length_penalties"]


@dataclass
class _Hypothesis:
    score: np.float32  # total log-probability of ``tokens``
    rank: np.float32  # score / length penalty of len(tokens): what the beam keeps by
    tokens: list[int]  # decoded ids, without BOS; ends with EOS once finished
    handle: Any  # the decoder's state after the last token before EOS (see _beam_rows)
    logp: np.ndarray | None  # log-probabilities of the next token (None once finished)


def _whole(value: Any) -> bool:
    """An int or numpy integer, not a bool (a float width would be cut silently)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_beam_options(width: Any, max_len: Any, length_penalty: Any = 0.0) -> float:
    """Refuse a bad beam width, ``max_len`` or length penalty with an
    :class:`~edgeseq.errors.InputError` (before anything runs); returns ``alpha``."""
    if not _whole(width) or width < 1:
        raise InputError(
            f"the beam width must be a whole number >= 1, got {width!r}; 1 is greedy decoding."
        )
    if not _whole(max_len) or max_len < 0:
        raise InputError(f"max_len must be a whole number >= 0 (tokens), got {max_len!r}.")
    ok = isinstance(length_penalty, Real) and not isinstance(length_penalty, bool)
    if not ok or not math.isfinite(float(length_penalty)) or float(length_penalty) < 0:
        raise InputError(
            f"length_penalty must be a finite number >= 0 (GNMT's alpha: hypotheses are "
            f"ranked by log-probability / ((5 + length) / 6) ** alpha), got "
            f"{length_penalty!r}; 0 ranks by total log-probability, 0.6 to 1.0 lets longer "
            "outputs win."
        )
    return float(length_penalty)


def length_penalties(alpha: float, max_len: int) -> np.ndarray:
    """GNMT's length penalty ``((5 + n) / 6) ** alpha`` for n = 0 .. max_len, as float32
    (computed in Python floats, so every beam that uses this table divides alike)."""
    return np.array([((5 + n) / 6) ** alpha for n in range(int(max_len) + 1)], np.float32)


def beam_tokens(
    decoder: Any,
    bos: int,
    eos: int,
    max_len: int,
    width: int,
    length_penalty: float = 0.0,
    batched: bool | None = None,
) -> Iterator[int]:
    """Token ids of the most probable output of ``decoder`` (a primed
    :class:`~edgeseq.runtime.StreamingPredictor` of a token decoder), without BOS/EOS.

    Keeps the ``width`` best partial outputs by total log-probability divided by the
    length penalty ``((5 + length) / 6) ** length_penalty`` (0: the total itself; a
    finished one stays, at no cost, while others grow); stops when every kept output has
    ended or after ``max_len`` tokens. Afterwards the decoder holds the best output's
    state. ``batched``: step the hypotheses as rows of one decoder call per step (None:
    when the decoder's contract allows a batch and a probe finds the rows computed bit for
    bit as batch 1 computes them, see :func:`._beam_rows.rows_agree`; False: one batch-1
    call per hypothesis).
    """
    lp = length_penalties(check_beam_options(width, max_len, length_penalty), max_len)
    if batched is None:  # rows of one call where that computes what batch 1 computes
        batched = batchable(decoder) and rows_agree(decoder, int(width), (bos, eos))
    steps = RowSteps(decoder, width) if batched else OneByOne(decoder)
    handle, logp = steps.first(bos)
    beam = [_Hypothesis(np.float32(0.0), np.float32(0.0), [], handle, logp)]
    emitted = 0
    for i in range(int(max_len)):
        if all(h.logp is None for h in beam):
            break
        candidates: list[tuple[float, int, int, np.float32]] = []  # (rank, parent, token, score)
        for k, h in enumerate(beam):
            if h.logp is None:
                candidates.append((float(h.rank), k, eos, h.score))
                continue
            total = h.score + h.logp  # float32, as the scores add up in training code
            ranks = total / lp[i + 1]  # every extension of h has i + 1 tokens
            top = np.argsort(-ranks, kind="stable")[:width]
            candidates.extend((float(ranks[t]), k, int(t), total[t]) for t in top)
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        kept = candidates[:width]
        grow = [(beam[k].handle, t) for _, k, t, _ in kept if beam[k].logp is not None and t != eos]
        grown = iter(steps.expand(grow))  # the decoder runs here: once, or once per row
        nxt = []
        for rank, k, token, score in kept:
            parent = beam[k]
            if parent.logp is None:  # finished: carried over unchanged
                nxt.append(parent)
                continue
            tokens = [*parent.tokens, token]
            if token == eos:
                nxt.append(_Hypothesis(score, np.float32(rank), tokens, parent.handle, None))
                continue
            nxt.append(_Hypothesis(score, np.float32(rank), tokens, *next(grown)))
        beam = nxt
        agreed = _common_prefix([h.tokens for h in beam])
        while emitted < len(agreed) and agreed[emitted] != eos:
            yield agreed[emitted]
            emitted += 1
    best = max(beam, key=lambda h: h.rank)  # the first of equals, as argmax picks
    steps.finish(best.handle)
    tokens = best.tokens[: best.tokens.index(eos)] if eos in best.tokens else best.tokens
    yield from tokens[emitted:]


def _common_prefix(rows: list[list[int]]) -> list[int]:
    first = rows[0]
    n = min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != first[i] for r in rows[1:]):
            return first[:i]
    return first[:n]
