"""A translation memory on the device: numpy + json only (no scikit-learn, no scipy).

:class:`TranslationMemory` stores (source, output) pairs and recalls, for a query, the
output of the most similar stored source, scored exactly as scikit-learn's
``TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)`` cosine
followed by :mod:`difflib`'s ratio (the "neural fuzzy repair" input of example 06):

1. each text is lower-cased, runs of whitespace become one space, and every word padded
   with one space on each side gives its character 1-, 2- and 3-grams (``char_wb``);
2. a weight is ``(1 + ln count) * idf`` with the smooth idf ``ln((1 + n) / (1 + df)) + 1``
   over the ``n`` stored sources, each vector scaled to unit length (l2); n-grams no
   stored source has are ignored in a query;
3. the ``candidates`` (10) stored sources of highest cosine are kept, and of those the one
   whose :class:`difflib.SequenceMatcher` ratio with the query (original case) is highest
   wins.

The floating-point sums run in scikit-learn's order (a source's norm over its n-grams in
order of first appearance in the stored sources, a query's norm and its dot products in
the n-grams' alphabetical order), so the cosines are bit-for-bit scikit-learn's.

**Tie rule** (deterministic): candidates are ranked by cosine, highest first, equal cosines
by lower stored index; the winner is the candidate of highest ratio, equal ratios going to
the earlier candidate in that ranking (higher cosine, then lower index).

The index is posting lists (per n-gram, the stored sources that have it and their weights,
numpy arrays): memory grows with the stored n-grams, and one query costs one dense
``(n,)`` score vector. :meth:`save` writes one JSON file (the pairs); :meth:`load`
rebuilds the index from it.
"""

from __future__ import annotations

import difflib
import json
import re
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.atomic import atomic_write
from edgeseq.errors import InputError, ModelLoadError

__all__ = ["TranslationMemory", "char_ngrams"]

FORMAT = "edgeseq.translation-memory/1"
_WHITE_SPACES = re.compile(r"\s\s+")


def char_ngrams(text: str, low: int = 1, high: int = 3) -> list[str]:
    """The lower-cased character ``low``..``high``-grams of each space-padded word of
    ``text``, in scikit-learn's ``char_wb`` order (a word shorter than ``n`` counts once)."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text.lower()).split():
        w = f" {word} "
        for n in range(low, high + 1):
            grams.extend(w[i : i + n] for i in range(max(len(w) - n, 0) + 1))
            if len(w) <= n:
                break
    return grams


class TranslationMemory:
    """Recall the output of the most similar stored source (see the module docstring).

    Args:
        sources: ``n >= 1`` stored source texts.
        outputs: ``n`` outputs, one per source (any value; JSON-encodable to :meth:`save`).
        candidates: how many nearest sources by cosine the ratio chooses among (10).
        separator: what :meth:`encoder_input` puts between a query and its recalled output
            (U+001E, example 06's; saved with the memory so a device joins them the same way).
    """

    def __init__(
        self,
        sources: Sequence[str],
        outputs: Sequence[Any],
        candidates: int = 10,
        separator: str = "\x1e",
    ):
        sources, outputs = list(sources), list(outputs)
        if not sources or len(sources) != len(outputs):
            raise InputError(
                f"a translation memory needs n >= 1 sources and n outputs; got "
                f"{len(sources)} sources and {len(outputs)} outputs: pass one output per source"
            )
        bad = next((s for s in sources if not isinstance(s, str)), None)
        if bad is not None:
            raise InputError(f"memory sources must be str; got {type(bad).__name__} {bad!r}")
        if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)):
            raise InputError(f"candidates must be a whole number >= 1; got {candidates!r}")
        if candidates < 1:
            raise InputError(f"candidates must be >= 1; got {candidates}")
        if not isinstance(separator, str):
            raise InputError(f"separator must be str; got {type(separator).__name__}")
        self.separator = separator
        self.sources, self.outputs, self.candidates = sources, outputs, int(candidates)
        self._build()

    def __len__(self) -> int:
        return len(self.sources)

    def _build(self) -> None:
        first: dict[str, int] = {}  # n-gram -> order of first appearance
        docs, feats, counts = array("q"), array("q"), array("q")  # compact while building
        for d, text in enumerate(self.sources):
            per: dict[int, int] = {}
            for g in char_ngrams(text):
                k = first.setdefault(g, len(first))
                per[k] = per.get(k, 0) + 1
            docs.extend([d] * len(per))
            feats.extend(per)
            counts.extend(per.values())
        n = len(self.sources)
        doc = np.asarray(docs, dtype=np.int64)
        feat = np.asarray(feats, dtype=np.int64)
        df = np.bincount(feat, minlength=len(first)).astype(np.float64) + 1.0
        idf = np.full_like(df, n + 1.0)
        idf /= df
        np.log(idf, out=idf)
        idf += 1.0
        weight = np.log(np.asarray(counts, dtype=np.float64)) + 1.0
        weight *= idf[feat]
        order = np.lexsort((feat, doc))  # each source's n-grams by first appearance
        doc, feat, weight = doc[order], feat[order], weight[order]
        norm = np.sqrt(np.bincount(doc, weights=weight * weight, minlength=n))
        weight /= np.where(norm == 0.0, 1.0, norm)[doc]
        names = sorted(first)  # alphabetical ids: a query sums in this order
        rank = np.empty(len(names), dtype=np.int64)
        rank[[first[g] for g in names]] = np.arange(len(names))
        self._vocab = {g: i for i, g in enumerate(names)}
        self._idf = idf[np.argsort(rank)]
        alpha = rank[feat]
        by = np.argsort(alpha, kind="stable")  # postings: per n-gram, sources ascending
        self._post_doc = doc[by].astype(np.int32)
        self._post_weight = weight[by]
        self._indptr = np.zeros(len(names) + 1, dtype=np.int64)
        self._sizes = np.bincount(alpha, minlength=len(names))
        np.cumsum(self._sizes, out=self._indptr[1:])

    def cosines(self, query: str) -> np.ndarray:
        """``(n,)`` float64: the TF-IDF cosine of ``query`` with every stored source."""
        if not isinstance(query, str):
            raise InputError(f"a memory query must be str; got {type(query).__name__}")
        per: dict[int, int] = {}
        for g in char_ngrams(query):
            k = self._vocab.get(g)
            if k is not None:
                per[k] = per.get(k, 0) + 1
        out = np.zeros(len(self.sources))
        if not per:
            return out
        keys = np.array(sorted(per), dtype=np.int64)
        w = np.log(np.array([per[k] for k in keys.tolist()], dtype=np.float64)) + 1.0
        w *= self._idf[keys]
        total = 0.0
        for x in w.tolist():  # sequential, in scikit-learn's order
            total += x * x
        w /= np.sqrt(total)
        starts, sizes = self._indptr[keys], self._sizes[keys]
        # the postings of each query n-gram in turn: sums run in scikit-learn's order
        idx = np.arange(sizes.sum()) + np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
        prods = self._post_weight[idx] * np.repeat(w, sizes)
        return np.bincount(self._post_doc[idx], weights=prods, minlength=len(self.sources))

    def nearest(self, query: str, exclude: int | None = None) -> int:
        """The stored index whose output :meth:`lookup` returns; ``exclude`` (a stored
        index) may not be chosen (leave one out)."""
        sims = self.cosines(query)
        if exclude is not None:
            sims[exclude] = -np.inf
        ranked = np.argsort(-sims, kind="stable")[: self.candidates]
        ranked = [j for j in ranked.tolist() if sims[j] > -np.inf]
        if not ranked:
            raise InputError("leave-one-out needs a memory of at least two pairs; got one")
        best, best_ratio = ranked[0], -1.0
        for j in ranked:
            ratio = difflib.SequenceMatcher(None, query, self.sources[j]).ratio()
            if ratio > best_ratio:
                best, best_ratio = j, ratio
        return best

    def lookup(self, query: str) -> Any:
        """The output of the stored source most similar to ``query``."""
        return self.outputs[self.nearest(query)]

    def lookup_batch(self, queries: Sequence[str]) -> list[Any]:
        """``len(queries)`` outputs, :meth:`lookup` of each query."""
        return [self.lookup(q) for q in queries]

    def encoder_input(self, query: str) -> str:
        """``query``, the separator and the recalled output (which must be str): what an
        encoder trained on memory-augmented sources (example 06) reads."""
        recalled = self.lookup(query)
        if not isinstance(recalled, str):
            raise InputError(
                f"encoder_input joins text; this memory's outputs are {type(recalled).__name__}"
            )
        return f"{query}{self.separator}{recalled}"

    def leave_one_out(self) -> list[Any]:
        """``n`` outputs: for each stored pair, the output of the most similar *other*
        stored source (what the memory gives a pair it had not stored; training inputs)."""
        return [self.outputs[self.nearest(s, exclude=i)] for i, s in enumerate(self.sources)]

    def save(self, path: str | Path) -> Path:
        """Write the memory to one JSON file (atomically); returns its path."""
        doc = {
            "format": FORMAT,
            "candidates": self.candidates,
            "separator": self.separator,
            "sources": self.sources,
            "outputs": self.outputs,
        }
        try:
            data = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except TypeError as e:
            raise InputError(f"memory outputs must be JSON values to save: {e}") from None
        return atomic_write(path, data)

    @classmethod
    def load(cls, path: str | Path) -> TranslationMemory:
        """Read a file written by :meth:`save`; a missing or corrupt file raises
        :class:`~edgeseq.errors.ModelLoadError`."""
        path = Path(path)
        try:
            doc = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ModelLoadError(
                f"translation memory {str(path)!r} not found: pass the memory file saved "
                "beside the model (TranslationMemory.save)"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ModelLoadError(
                f"translation memory {str(path)!r} is not a saved memory (JSON): {e}; "
                "save it again with TranslationMemory.save"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ModelLoadError(
                f"translation memory {str(path)!r}: expected format {FORMAT!r}, got {got!r}; "
                "save it again with TranslationMemory.save"
            )
        try:
            return cls(doc["sources"], doc["outputs"], doc["candidates"], doc["separator"])
        except (KeyError, TypeError, InputError) as e:
            raise ModelLoadError(
                f"translation memory {str(path)!r} is corrupt ({type(e).__name__}: {e}); "
                "save it again with TranslationMemory.save"
            ) from None
