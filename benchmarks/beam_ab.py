"""Beam search on the device: hypotheses as rows of one decoder call per step (batched)
against one batch-1 call per hypothesis, interleaved sentence by sentence.

Each source is decoded by both paths in turn (which goes first alternates), one thread,
through ``EncoderDecoder.start`` and the runtime's beam; the script checks both give the
same tokens and prints the median milliseconds per sentence of each path and the median
of the per-sentence ratios.

    python benchmarks/beam_ab.py translate.onnx --sources held_out.txt --width 5
    python benchmarks/beam_ab.py g2p.onnx --source hello --source world --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("decoder", type=Path, help="a seq2seq decoder with a text encoder")
    parser.add_argument("--source", action="append", default=[], help="source text")
    parser.add_argument("--sources", type=Path, help="a file of source texts, one per line")
    parser.add_argument("--width", type=int, default=5)
    parser.add_argument("--max-len", type=int, default=80)
    parser.add_argument("--length-penalty", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the sources")
    args = parser.parse_args(argv)

    from edgeseq.runtime import EncoderDecoder
    from edgeseq.runtime._beam import beam_tokens
    from edgeseq.runtime._beam_rows import batchable
    from edgeseq.runtime.generate import BOS, EOS

    texts = list(args.source)
    if args.sources is not None:
        texts += [t for t in args.sources.read_text().split("\n") if t]
    if not texts:
        parser.error("give --source TEXT or --sources FILE")
    pair = EncoderDecoder(args.decoder, threads=1)
    if not batchable(pair.decoder):
        parser.error(f"{args.decoder}'s contract allows no batch: nothing to compare")
    times: dict[bool, list[float]] = {True: [], False: []}
    ratios, same = [], 0
    for r in range(args.rounds):
        for k, text in enumerate(texts):
            source = pair._source(text, "unk")
            found = {}
            for batched in (True, False) if (k + r) % 2 == 0 else (False, True):
                pair.start(source)
                t0 = time.perf_counter()
                found[batched] = list(
                    beam_tokens(
                        pair.decoder, BOS, EOS, args.max_len, args.width,
                        args.length_penalty, batched=batched,
                    )
                )  # fmt: skip
                times[batched].append((time.perf_counter() - t0) * 1e3)
            same += found[True] == found[False]
            ratios.append(times[False][-1] / times[True][-1])
    n = len(ratios)
    print(f"{args.decoder.name}: width {args.width}, {len(texts)} sources x {args.rounds}")
    print(f"  same tokens: {same} / {n}")
    for batched, label in ((False, "one call per hypothesis"), (True, "rows of one call")):
        print(f"  {label:24s} median {statistics.median(times[batched]):8.2f} ms / sentence")
    print(f"  per-sentence speed-up (one-by-one / batched): median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
