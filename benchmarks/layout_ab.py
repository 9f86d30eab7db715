"""Issue 20, A/B in one process: graphs in the recurrent op's layout vs the glue they replace,
and StreamPool (``step`` and ``step_rows``) vs one hand-written batched ``session.run``.

For each cell the benchmark's reference model (40 inputs, 128 hidden x 2 layers, 8 outputs)
is exported twice by this checkout: as it is now, and with the edge rewrite switched off
(``to_op_layout`` a no-op: the graph main wrote before issue 20); ``--lengths`` adds the
graphs with a lengths input (the idle-row mask; native exports' default before issue 14).
The same runtime streams both, one thread, alternating block by block, and the script
prints the median of the per-round ratios (new / old) of ``StreamingPredictor.step`` on
one frame and on 32 frames, the ratio of frames/s at T = 32 and T = 1, and the op-type
shares of kernel time (onnxruntime's profiler). Then StreamPool over N streams x 1 frame
against one batched ``session.run`` of the same rows (``HandLoop``), interleaved the same
way. Ratios survive a loaded machine; absolute times need a quiet one (``make bench``).

    python benchmarks/layout_ab.py                         # every cell, 256 and 4096 streams
    python benchmarks/layout_ab.py --cells lstm --rounds 5 --streams 256   # a quick look
    python benchmarks/layout_ab.py --pool-only             # only StreamPool vs batched run
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _interleave(calls: dict[str, Callable[[], object]], rounds: int, per_block: dict[str, int]):
    """Per round, each call's median over a block; returns ``{name: [median per round]}``."""
    out: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            times = []
            for _ in range(per_block[name]):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[name].append(statistics.median(times))
    return out


def _ratio(med: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(med[a], med[b]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--streams", type=int, nargs="+", default=[256, 4096])
    ap.add_argument("--lengths", action="store_true", help="also graphs with a lengths input")
    ap.add_argument("--pool-only", action="store_true", help="only the StreamPool comparison")
    args = ap.parse_args()

    import torch

    from edgeseq.bench._profile import ort_profile
    from edgeseq.bench._sections import HandLoop
    from edgeseq.exporters._layout import OpLayout
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor, StreamPool
    from edgeseq.train.models import SeqConfig, SeqModel

    export_mod = importlib.import_module("edgeseq.exporters._write")
    rewrite = export_mod.to_op_layout

    def unchanged(proto, frames, states):  # the graph as exported, glue and all
        return OpLayout(False, list(states))

    work = Path(tempfile.mkdtemp(prefix="layout-ab-"))
    for cell in args.cells:
        torch.manual_seed(0)
        cfg = SeqConfig(cell=cell, input_size=40, hidden_size=128, layers=2, output_size=8)
        model = SeqModel(cfg).eval()
        files = {}
        variants = [("new", rewrite, None)]
        if not args.pool_only:
            variants.insert(0, ("old", unchanged, None))
        if args.lengths:
            variants += [("old+lengths", unchanged, True), ("new+lengths", rewrite, True)]
        for tag, fn, lengths in variants:
            export_mod.to_op_layout = fn
            files[tag] = work / f"{cell}.{tag}.onnx"
            export_model(model, files[tag], mode="native", lengths=lengths)
        export_mod.to_op_layout = rewrite
        rng = np.random.default_rng(0)
        frame = rng.standard_normal(40).astype(np.float32)
        block = rng.standard_normal((32, 40)).astype(np.float32)
        if not args.pool_only:
            calls, per = {}, {}
            for tag, path in files.items():
                pred = StreamingPredictor(path, threads=1)
                calls[tag] = lambda p=pred, f=frame: p.step(f)
                calls[f"{tag}@32"] = lambda p=pred, b=block: p.step(b)
                per[tag], per[f"{tag}@32"] = 200, 20
            med = _interleave(calls, args.rounds, per)
            print(f"\n{cell}: StreamingPredictor.step, new / old (median of per-round ratios)")
            for tag in [t for t in files if t.startswith("new")]:
                base = tag.replace("new", "old")
                print(
                    f"  {tag} / {base}: 1 frame {_ratio(med, tag, base):.3f}, "
                    f"32 frames {_ratio(med, f'{tag}@32', f'{base}@32'):.3f}"
                )
            for tag in files:
                fps = statistics.median(32 * a / b for a, b in zip(med[tag], med[f"{tag}@32"]))
                print(f"  {tag}: frames/s at T = 32 / T = 1 = {fps:.2f}")
            for tag in files:
                shares = ort_profile(files[tag], 1, frame.reshape(1, 1, -1), 2000, work)["op_share"]
                text = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
                print(f"  kernel time by op, {tag}: {text}")
        if args.pool_only:
            print(f"\n{cell}: StreamPool (median of per-round ratios)")
        for n in args.streams:
            frames = rng.standard_normal((n, 40)).astype(np.float32)
            hand = HandLoop(files["new"], 1, batch=n)
            pool = StreamPool(files["new"], max_streams=n, threads=1)
            feed = {pool.open(): f for f in frames}
            arrays = StreamPool(files["new"], max_streams=n, threads=1)
            ids = np.array([arrays.open() for _ in frames])
            x = frames[:, None]
            pool_calls = {
                "pool": lambda p=pool, f=feed: p.step(f),
                "rows": lambda p=arrays, i=ids, f=frames: p.step_rows(i, f),
                "hand": lambda h=hand, x=x: h.step(x),
            }
            reps = max(3, 2000 // n)
            med = _interleave(pool_calls, args.rounds, dict.fromkeys(pool_calls, reps))
            print(
                f"  {n} streams x 1 frame / batched session.run: StreamPool.step (dict) "
                f"{_ratio(med, 'pool', 'hand'):.3f}, StreamPool.step_rows (array) "
                f"{_ratio(med, 'rows', 'hand'):.3f}"
            )


if __name__ == "__main__":
    main()
