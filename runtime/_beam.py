"""Beam search over any streaming token decoder, streamed as its hypotheses agree.

Each hypothesis is a snapshot of the decoder's state (recurrent state, and for an
attention decoder its memory) after its last token, so the search works for every cell,
layout and topology the predictor streams. The tokens every live hypothesis shares are
final: they are yielded as soon as the hypotheses agree on them, and the rest of the best
hypothesis when the search ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.errors import InputError

__all__ = ["beam_tokens"]


@dataclass
class _Hypothesis:
    score: np.float32  # total log-probability of ``tokens``
    tokens: list[int]  # decoded ids, without BOS; ends with EOS once finished
    snapshot: Any  # the decoder's state after the last token before EOS
    logp: np.ndarray | None  # log-probabilities of the next token (None once finished)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float32).reshape(-1)
    x = x - x.max()
    return x - np.log(np.exp(x).sum(dtype=np.float32))


def beam_tokens(decoder: Any, bos: int, eos: int, max_len: int, width: int) -> Iterator[int]:
    """Token ids of the most probable output of ``decoder`` (a primed
    :class:`~edgeseq.runtime.StreamingPredictor` of a token decoder), without BOS/EOS.

    Keeps the ``width`` best partial outputs by total log-probability (a finished one
    stays, at no cost, while others grow); stops when every kept output has ended or
    after ``max_len`` tokens. Afterwards the decoder holds the best output's state.
    """
    if int(width) < 1:
        raise InputError(f"the beam width must be >= 1, got {width!r}; 1 is greedy decoding.")
    if int(max_len) < 0:
        raise InputError(f"max_len must be >= 0, got {max_len!r}.")
    logp = _log_softmax(decoder.step(np.int64(bos)))
    beam = [_Hypothesis(np.float32(0.0), [], decoder.snapshot(), logp)]
    emitted = 0
    for _ in range(int(max_len)):
        if all(h.logp is None for h in beam):
            break
        candidates: list[tuple[float, int, int]] = []  # (score, parent, token)
        for k, h in enumerate(beam):
            if h.logp is None:
                candidates.append((float(h.score), k, eos))
                continue
            total = h.score + h.logp  # float32, as the scores add up in training code
            top = np.argsort(-total, kind="stable")[:width]
            candidates.extend((float(total[t]), k, int(t)) for t in top)
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        nxt = []
        for score, k, token in candidates[:width]:
            parent = beam[k]
            if parent.logp is None:  # finished: carried over unchanged
                nxt.append(parent)
            elif token == eos:
                nxt.append(
                    _Hypothesis(np.float32(score), [*parent.tokens, eos], parent.snapshot, None)
                )
            else:
                decoder.restore(parent.snapshot)
                step = _log_softmax(decoder.step(np.int64(token)))
                nxt.append(
                    _Hypothesis(
                        np.float32(score), [*parent.tokens, token], decoder.snapshot(), step
                    )
                )
        beam = nxt
        agreed = _common_prefix([h.tokens for h in beam])
        while emitted < len(agreed) and agreed[emitted] != eos:
            yield agreed[emitted]
            emitted += 1
    best = max(beam, key=lambda h: h.score)  # the first of equals, as argmax picks
    decoder.restore(best.snapshot)
    tokens = best.tokens[: best.tokens.index(eos)] if eos in best.tokens else best.tokens
    yield from tokens[emitted:]


def _common_prefix(rows: list[list[int]]) -> list[int]:
    first = rows[0]
    n = min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != first[i] for r in rows[1:]):
            return first[:i]
    return first[:n]
