"""Character vocabulary shared by text models, their contracts and the runtime's decoding.

numpy and the standard library only, so a device can decode with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from edgeseq.errors import InputError

__all__ = ["Vocabulary"]


class Vocabulary:
    """Character vocabulary; ids 0..3 are reserved for ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``.

    Parameters
    ----------
    chars : iterable of str
        Single characters, given ids 4, 5, ... in order (duplicates ignored).
    """

    SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
    PAD, UNK, BOS, EOS = 0, 1, 2, 3

    def __init__(self, chars: Iterable[str]) -> None:
        self.tokens: list[str] = list(self.SPECIALS)
        for ch in dict.fromkeys(chars):
            if len(ch) != 1:
                raise InputError(f"vocabulary entries must be single characters, got {ch!r}")
            self.tokens.append(ch)
        self._ids = {tok: i for i, tok in enumerate(self.tokens)}

    @classmethod
    def from_text(cls, text: str, min_count: int = 1) -> Vocabulary:
        """Every character seen at least ``min_count`` times, in sorted order."""
        counts = Counter(text)
        return cls(sorted(ch for ch, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> np.ndarray:
        """Ids of ``text`` (unknown characters -> ``UNK``), int64 shape [len(text) + bos + eos]."""
        ids = [self._ids.get(ch, self.UNK) for ch in text]
        ids = [self.BOS] * bos + ids + [self.EOS] * eos
        return np.array(ids, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; stops at ``EOS``, skips ``PAD``/``BOS``, shows ``UNK`` as U+FFFD."""
        ids = [int(i) for i in ids]
        ids = ids[: ids.index(self.EOS)] if self.EOS in ids else ids
        shown = ["", "\ufffd", "", "", *self.tokens[4:]]
        return "".join(shown[i] for i in ids)

    def to_list(self) -> list[str]:
        """JSON-able list: index = id, the four specials first."""
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> Vocabulary:
        """Inverse of :meth:`to_list`."""
        if tuple(tokens[:4]) != cls.SPECIALS:
            raise InputError(f"expected the list to start with {cls.SPECIALS}, got {tokens[:4]}")
        return cls(tokens[4:])
