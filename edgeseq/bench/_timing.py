"""Timing primitives of the benchmark suite: interleaved rounds, per-call samples, spread.

Every contender of a section is timed in the same rounds, in a rotating order, so a
burst of load from another process lands on all of them rather than on one. Each call
is timed on its own (``perf_counter_ns``, about 0.1 µs of overhead); a section reports
the median and the 10th/90th percentiles of those per-call times.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

__all__ = [
    "Budget",
    "Stats",
    "interleave",
    "machine_info",
    "percentile",
    "time_text",
    "unavailable",
]


def unavailable(reason: str) -> dict[str, Any]:
    """The record of a contender or variant this build cannot run."""
    return {"available": False, "reason": reason}


def time_text(s: float) -> str:
    """A per-call time for a table: ``12.3 µs`` below a millisecond, else ``1.23 ms``."""
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


@dataclass(frozen=True)
class Stats:
    """Per-call wall time of one contender, in seconds."""

    median: float
    p10: float
    p90: float
    n: int  # calls timed

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        s = sorted(samples_ns)
        return cls(
            median=percentile(s, 50) / 1e9,
            p10=percentile(s, 10) / 1e9,
            p90=percentile(s, 90) / 1e9,
            n=len(s),
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100) of an already sorted sequence."""
    if not ordered:
        raise ValueError("percentile of no samples")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Budget:
    """How long each contender is timed: ``rounds`` blocks of about ``block_s`` each."""

    rounds: int = 20
    block_s: float = 0.025
    warmup_s: float = 0.05
    max_calls_per_block: int = 2000


def _calls_per_block(fn: Callable[[], object], budget: Budget) -> int:
    """Warm ``fn`` up for ``budget.warmup_s`` (at least 3 calls) and size its blocks."""
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < budget.warmup_s:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    return max(1, min(budget.max_calls_per_block, round(budget.block_s / per_call)))


def interleave(calls: dict[str, Callable[[], object]], budget: Budget) -> dict[str, Stats]:
    """Time every callable in ``calls`` over the same rounds; return per-call :class:`Stats`.

    Round ``r`` runs the contenders in an order rotated by ``r``; the garbage collector
    is off inside a block (as in :mod:`timeit`) and runs between rounds.
    """
    names = list(calls)
    sizes = {n: _calls_per_block(calls[n], budget) for n in names}
    samples: dict[str, list[int]] = {n: [] for n in names}
    clock = time.perf_counter_ns
    for r in range(budget.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, buf = calls[name], samples[name]
            gc.disable()
            try:
                for _ in range(sizes[name]):
                    t0 = clock()
                    fn()
                    buf.append(clock() - t0)
            finally:
                gc.enable()
        gc.collect()
    return {n: Stats.of(samples[n]) for n in names}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _blas() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "architecture", "num_threads", "version")
    return [{k: i.get(k) for k in keep} for i in threadpool_info()]


def _source() -> dict[str, Any] | None:
    """The git commit of the measured edgeseq source and whether it had local changes."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
        if done.returncode != 0:
            raise OSError(done.stderr.strip())
        return done.stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        package = ("edgeseq", "runtime", "exporters")  # the dirs pyproject maps into the package
        changed = git("status", "--porcelain", "--untracked-files=no", "--", *package).splitlines()
    except (OSError, subprocess.SubprocessError):
        return None  # an installed package, not a checkout
    return {"commit": commit, "modified_files": sorted(line[3:] for line in changed)}


def machine_info(threads: int) -> dict[str, Any]:
    """CPU, cores, library versions, thread count and the BLAS environment of this run."""
    import numpy as np
    import onnxruntime as ort

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnx": _version("onnx"),
        "torch": _version("torch"),
        "edgeseq": _version("edgeseq"),
        "threads": threads,
        "env": {
            k: os.environ.get(k)
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OMP_NUM_THREADS",
                "PYTHONDONTWRITEBYTECODE",
            )
        },
        "blas": _blas(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "source": _source(),
    }
