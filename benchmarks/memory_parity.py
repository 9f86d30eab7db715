"""The device's translation memory against scikit-learn's on example 06's full data.

    python benchmarks/memory_parity.py [--seed 0]

Builds example 06's split (all catalogues), then recalls with
:class:`edgeseq.runtime.TranslationMemory` and with scikit-learn's TfidfVectorizer
(``examples/_seq2seq.py: sklearn_memory``, same tie rule) for every training pair (leave
one out) and every held-out English, and prints how many picks agree, with the
disagreements. Needs the ``examples`` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="example 06's split seed")
    args = parser.parse_args()
    from _seq2seq import sklearn_memory

    from edgeseq.runtime import TranslationMemory
    from edgeseq.train.data import train_val_test_split

    pairs, _ = importlib.import_module("06_translation").load_pairs(False)
    tr, _, te = train_val_test_split(len(pairs), (0.9, 0.0, 0.1), seed=args.seed)
    en, fr = [pairs[i][0] for i in tr], [pairs[i][1] for i in tr]
    test = [pairs[i][0] for i in te]
    index = list(range(len(en)))  # outputs = stored indices: the picks themselves
    t = time.perf_counter()
    memory = TranslationMemory(en, index)
    ours = (memory.leave_one_out(), memory.lookup_batch(test))
    print(f"device memory: {time.perf_counter() - t:.1f} s for {len(en)} + {len(test)} queries")
    t = time.perf_counter()
    theirs = (sklearn_memory(en, index), sklearn_memory(en, index, test))
    print(f"scikit-learn:  {time.perf_counter() - t:.1f} s")
    for name, queries, a, b in zip(
        ("training pairs, leave one out", "held-out English"), (en, test), ours, theirs
    ):
        same = sum(x == y for x, y in zip(a, b))
        print(f"{name}: {same}/{len(a)} picks agree")
        for q, x, y in [(q, x, y) for q, x, y in zip(queries, a, b) if x != y][:10]:
            print(f"  {q!r}: device {en[x]!r} ({fr[x]!r}), scikit-learn {en[y]!r}")


if __name__ == "__main__":
    main()
