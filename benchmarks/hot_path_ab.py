"""Per-frame hot path, A/B: this checkout's runtime against another checkout's, interleaved
in one process so that machine load hits both sides alike.

Measures ``StreamingPredictor.step`` on one frame and on chunks ``[T, F]`` (``--chunks``)
and ``StreamPool.step`` over S streams x 1 frame, for each cell, alternating the two
runtimes call by call, and prints each side's median time per call (the median call of
each round, then the median over rounds) and the median of the per-round ratios (new /
base). The ratio is what survives a loaded
machine; the absolute figures need a quiet one.

Example (the base is any checkout of edgeseq, e.g. ``git worktree add /tmp/base main``):

    python benchmarks/hot_path_ab.py --base /tmp/base
    python benchmarks/hot_path_ab.py --base /tmp/base --rounds 3 --calls 200   # quick check

The base checkout's ``edgeseq/``, ``runtime/`` and ``exporters/`` are imported as
``edgeseq_base`` (import statements rewritten on load), so both runtimes share one
process, one onnxruntime and one model file.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

_IMPORT = re.compile(r"^(\s*)(from|import)(\s+)edgeseq\b", re.MULTILINE)


class _BaseFinder(importlib.abc.MetaPathFinder, importlib.abc.SourceLoader):
    """Imports ``edgeseq_base.*`` from another checkout, rewriting its imports of
    ``edgeseq`` so that the two copies never mix."""

    def __init__(self, root: Path, alias: str = "edgeseq_base") -> None:
        self.root, self.alias = root, alias

    def _where(self, fullname: str) -> Path | None:
        parts = fullname.split(".")[1:]
        if parts and parts[0] in ("runtime", "exporters"):
            base = self.root / parts[0]
            parts = parts[1:]
        else:
            base = self.root / "edgeseq"
        target = base.joinpath(*parts)
        if (target / "__init__.py").is_file():
            return target / "__init__.py"
        if target.with_suffix(".py").is_file():
            return target.with_suffix(".py")
        return None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.alias and not fullname.startswith(self.alias + "."):
            return None
        where = self._where(fullname)
        if where is None:
            return None
        is_pkg = where.name == "__init__.py"
        spec = importlib.util.spec_from_file_location(
            fullname,
            where,
            loader=self,
            submodule_search_locations=[str(where.parent)] if is_pkg else None,
        )
        return spec

    def get_filename(self, fullname: str) -> str:
        return str(self._where(fullname))

    def get_data(self, path: str) -> bytes:
        text = Path(path).read_text()
        return _IMPORT.sub(rf"\1\2\3{self.alias}", text).encode()

    def path_stats(self, path: str) -> dict:
        raise OSError  # no bytecode cache: the source is rewritten


def _runtime(base: Path | None) -> Any:
    if base is None:
        import edgeseq.runtime as rt

        return rt
    sys.meta_path.insert(0, _BaseFinder(base.resolve()))
    import edgeseq_base.runtime as rt  # type: ignore[import-not-found]

    return rt


def _model(cell: str, hidden: int, features: int, folder: Path, layers: int = 2) -> Path:
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    cfg = SeqConfig(
        cell=cell, input_size=features, hidden_size=hidden, layers=layers, output_size=8
    )
    path = folder / f"{cell}.onnx"
    export_model(SeqModel(cfg), path)
    return path


def _interleaved(a: Any, b: Any, calls: int) -> tuple[float, float]:
    """Median µs per call of ``a`` and of ``b``, called alternately (ABBA...), so that a
    busy machine slows both alike; preempted calls do not move a median."""
    ta, tb = [], []
    clock = time.perf_counter
    for i in range(calls):
        for fn, times in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
            t0 = clock()
            fn()
            times.append(clock() - t0)
    return statistics.median(ta) * 1e6, statistics.median(tb) * 1e6


def _cases(rt: Any, path: Path, streams: int, features: int, chunks: list[int]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    frame = rng.standard_normal(features).astype(np.float32)
    pred = rt.StreamingPredictor(str(path), threads=1)
    pool = rt.StreamPool(str(path), max_streams=streams, threads=1)
    ids = [pool.open() for _ in range(streams)]
    req = {i: rng.standard_normal(features).astype(np.float32) for i in ids}
    cases = {"StreamingPredictor.step, 1 frame": lambda: pred.step(frame)}
    for t in chunks:  # one stream's chunks [T, F], through the same predictor
        x = rng.standard_normal((t, features)).astype(np.float32)
        cases[f"StreamingPredictor.step, chunk [{t}, F]"] = lambda x=x: pred.step(x)
    cases[f"StreamPool.step, {streams} streams x 1 frame"] = lambda: pool.step(req)
    return {**cases, "_keep": (pred, pool)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the other edgeseq checkout")
    ap.add_argument("--cells", default="lstm,gru,rnn")
    # the BENCHMARKS.md reference model: 40 inputs -> 128 hidden x 2 layers -> 8
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--streams", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=2000, help="predictor calls per round")
    ap.add_argument("--chunks", default="1,2,32", help="chunk lengths T to time ('' for none)")
    args = ap.parse_args()
    new_rt, base_rt = _runtime(None), _runtime(args.base)
    pool_calls = max(10, args.calls // 20)
    chunks = [int(t) for t in args.chunks.split(",") if t]
    print(
        f"| case | cell | base µs/call | new µs/call | new/base (median of {args.rounds} "
        "rounds) |\n|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells.split(","):
            path = _model(cell, args.hidden, args.features, Path(tmp), args.layers)
            sides = {
                "base": _cases(base_rt, path, args.streams, args.features, chunks),
                "new": _cases(new_rt, path, args.streams, args.features, chunks),
            }
            for case in [k for k in sides["new"] if not k.startswith("_")]:
                calls = pool_calls if "Pool" in case else args.calls
                new, base = sides["new"][case], sides["base"][case]
                _interleaved(new, base, max(1, calls // 10))  # warm up: plans, caches
                rounds = [_interleaved(new, base, calls) for _ in range(args.rounds)]
                ratio = statistics.median(n / b for n, b in rounds)
                n = statistics.median(r[0] for r in rounds)
                b = statistics.median(r[1] for r in rounds)
                print(f"| {case} | {cell} | {b:.2f} | {n:.2f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
