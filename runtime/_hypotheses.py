"""Which axes of a frames input could be batch and time, guessed from its shape alone.

:func:`._probe.probe` tries layouts by running the model; this module only orders them:
every placement of batch and time on unknown (``None`` or named) axes that leads the
shape, ranked by the words in the dim names (``"batch"``, ``"seq_len"``, ...) and by how
few unknown axes are left as features. Nothing here runs the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["layout_hypotheses"]

_BATCH_WORDS = {"batch", "batchsize", "bs", "b", "n", "num", "nbatch"}
_TIME_WORDS = {"time", "t", "seq", "sequence", "seqlen", "len", "length", "steps", "frames"}
_TIME_WORDS |= {"samples", "sample", "chunk", "window", "audio", "tokens", "sequencelength"}


def _words(name: Any) -> set[str]:
    if not isinstance(name, str):
        return set()
    return {w for w in re.split(r"[^a-z0-9]+", name.lower().replace("_", "")) if w} | {
        w for w in re.split(r"[^a-z0-9]+", name.lower()) if w
    }


def layout_hypotheses(shape: Sequence[int | str | None]) -> list[tuple[int | None, int | None]]:
    """Layouts worth trying for a frames input of ``shape``, most plausible first."""
    rank = len(shape)

    def unknown(i: int) -> bool:
        return shape[i] is None or isinstance(shape[i], str)

    found = []
    for b in (0, 1, None):
        for t in (1, 0, None):
            if b is not None and (b >= rank or not (unknown(b) or shape[b] == 1)):
                continue
            if t is not None and (t >= rank or not unknown(t)):  # a fixed axis is features
                continue
            if b is not None and b == t:
                continue
            lead = sorted(a for a in (b, t) if a is not None)
            if lead != list(range(len(lead))):  # batch and time lead; features trail
                continue
            score = 0
            if b is not None:
                score += 2 * bool(_words(shape[b]) & _BATCH_WORDS)
                score -= 3 * bool(_words(shape[b]) & _TIME_WORDS)
            if t is not None:
                score += 2 * bool(_words(shape[t]) & _TIME_WORDS)
                score -= 3 * bool(_words(shape[t]) & _BATCH_WORDS)
            # an unknown axis left as a feature axis is unlikely
            score -= 3 * sum(1 for i in range(rank) if unknown(i) and i not in (b, t))
            found.append((-score, len(found), (b, t)))
    return [h for _, _, h in sorted(found)]
