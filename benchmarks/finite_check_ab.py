"""The hot path's finiteness check, A/B: four ways to test that every value is finite,
interleaved in one process so that machine load hits them alike.

``dot`` (``flat.dot(ones)``: fast, but prints RuntimeWarnings on overflow and Inf - Inf),
``errstate+dot`` (the same under ``np.errstate``), ``isfinite`` (``np.isfinite(x).all()``)
and ``vdot`` (``np.vdot``, the same BLAS dot without the warnings: what runtime/_frames.py
``quiet_dot`` uses). Prints the best time per check (µs) for float32 arrays of a one-stream
chunk (7 x 6 values) up to a long one (4096 x 64).

    python benchmarks/finite_check_ab.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def _dot(flat: np.ndarray, ones: np.ndarray) -> bool:
    return math.isfinite(flat.dot(ones))


def _errstate_dot(flat: np.ndarray, ones: np.ndarray) -> bool:
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(flat.dot(ones))


def _isfinite(flat: np.ndarray, ones: np.ndarray) -> bool:
    return bool(np.isfinite(flat).all())


def _vdot(flat: np.ndarray, ones: np.ndarray) -> bool:
    return math.isfinite(np.vdot(flat, ones))


WAYS = {"dot": _dot, "errstate+dot": _errstate_dot, "isfinite": _isfinite, "vdot": _vdot}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'values':>8}  " + "  ".join(f"{k:>13}" for k in WAYS) + "   (best µs per check)")
    for n in (7 * 6, 64 * 6, 256 * 32, 4096 * 64):
        flat = rng.standard_normal(n).astype(np.float32)
        ones = np.ones_like(flat)
        reps = max(10, 200_000 // n)
        best = dict.fromkeys(WAYS, math.inf)
        for _ in range(args.rounds):
            for name, way in WAYS.items():  # interleaved: each round times every way
                t = time.perf_counter()
                for _ in range(reps):
                    way(flat, ones)
                best[name] = min(best[name], (time.perf_counter() - t) / reps * 1e6)
        print(f"{n:>8}  " + "  ".join(f"{best[k]:>13.3f}" for k in WAYS))


if __name__ == "__main__":
    main()
