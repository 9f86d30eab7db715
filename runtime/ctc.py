"""Greedy CTC decoding as emissions arrive: the transcript grows while audio streams in.

A CTC model emits, at every step, scores over its symbols plus a *blank*. Greedy
decoding takes the best symbol per step, merges repeats and drops blanks. Done step by
step it needs only the previous step's best symbol, so :class:`GreedyCTC` keeps that
and the text so far, and :meth:`GreedyCTC.push` returns what each new batch of steps
adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import ContractError, InputError

__all__ = ["GreedyCTC"]


class GreedyCTC:
    """Incremental greedy CTC decoder for one stream.

    Parameters
    ----------
    vocab
        Text of each symbol id (the blank's entry is never emitted).
    blank
        The blank's id.

    Attributes
    ----------
    text : str
        The transcript so far.
    steps : list[int]
        For each character of ``text``, the step (0-based, counted over every pushed step)
        at which it was emitted.
    """

    def __init__(self, vocab: Sequence[str], blank: int = 0) -> None:
        if not 0 <= blank < len(vocab):
            raise InputError(f"blank must be a symbol id in [0, {len(vocab)}), got {blank}")
        self.vocab = list(vocab)
        self.blank = blank
        self.reset()

    @classmethod
    def from_contract(cls, contract: Contract) -> GreedyCTC:
        """The decoder a transcriber's contract describes (``preprocessing.vocab`` and
        ``model.extra["blank"]``)."""
        vocab = contract.preprocessing.vocab
        blank = contract.model.extra.get("blank", 0)
        if not vocab or not isinstance(blank, int):
            raise ContractError(
                "this model's contract has no vocabulary (preprocessing.vocab) or no blank id "
                "(model.extra.blank); expected a CTC model exported with both."
            )
        return cls(vocab, blank)

    def reset(self) -> None:
        self.text = ""
        self.steps: list[int] = []
        self.seen = 0  # steps pushed so far
        self._last = self.blank

    def push(self, emissions: Any) -> str:
        """Decode ``emissions`` ``[k, vocab]`` (scores or log-probabilities of ``k`` new
        steps, ``k`` may be 0); return the text they add."""
        e = np.asarray(emissions)
        if e.ndim == 1 and e.shape[0] == len(self.vocab):
            e = e[None]
        if e.ndim != 2 or e.shape[1] != len(self.vocab):
            raise InputError(
                f"emissions must be [k, {len(self.vocab)}] (one row of scores per step), got "
                f"{e.shape}"
            )
        added = []
        for i, sym in enumerate(np.argmax(e, axis=1).tolist()):
            if sym != self._last and sym != self.blank:
                added.append(self.vocab[sym])
                self.steps += [self.seen + i] * len(self.vocab[sym])
            self._last = sym
        self.seen += len(e)
        new = "".join(added)
        self.text += new
        return new
