"""The benchmark suite: edgeseq's streaming speed beside the alternatives, in one run.

On a reference model per cell (40 inputs, 128 hidden, 2 layers, linear head) with a
fixed thread count, seven sections are measured in one process on one machine:

1. per-frame latency: ``StreamingPredictor`` vs a hand-written ``session.run`` loop vs
   PyTorch eager vs the floor (one call of an Identity model);
2. many streams × 1 frame: ``StreamPool`` vs looping predictors vs batched runs (and, at
   a wide stream count, ``StreamPool`` vs one batched run only; and k of the streams
   stepped, ``StreamPool`` vs a hand-written gather, run and scatter of those k: ``_partial``);
3. frames per call (chunk sizes);
4. export modes and precisions: latency, file size, output drift;
5. footprint: wall time and peak RSS of fresh processes (runtime vs PyTorch);
6. export time per mode;
7. the JavaScript runtime (``runtime-js/``): per-frame latency in Node.js and headless
   Chromium beside Python's (``_js``).

Needs the ``torch`` extra (the suite exports its own models). ``edgeseq bench`` and
``python benchmarks/run.py`` are thin shells over :func:`run_bench` and :func:`render`.

This subpackage is a tool, not part of what a device installs or runs: it sits on top
of the layout and may import the core, the runtime, the exporters and the training side
(:mod:`edgeseq.train`); nothing else in edgeseq imports it except the CLI. Its private
modules: ``_models`` (reference models), ``_timing`` (budgets, interleaved timing),
``_sections`` (what is measured), ``_profile``, ``_footprint``, ``_targets`` and
``_report`` (the markdown table).

Examples
--------
>>> results = run_bench(BenchConfig.quick_setting(cells=("lstm",)))
>>> print(render(results))
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseq.bench._models import RefSpec
from edgeseq.bench._report import NOTES_MARKER, render
from edgeseq.bench._targets import TARGETS, Target, evaluate
from edgeseq.bench._timing import Budget, Stats, interleave, machine_info

__all__ = [
    "NOTES_MARKER",
    "SECTIONS",
    "TARGETS",
    "BenchConfig",
    "Budget",
    "Stats",
    "Target",
    "interleave",
    "render",
    "run_bench",
    "write_markdown",
]

SECTIONS = (
    "latency",
    "streams",
    "partial",
    "chunks",
    "modes",
    "profile",
    "footprint",
    "export",
    "js",
)
CELLS = ("lstm", "gru", "rnn")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """What one run measures and for how long; :meth:`quick_setting` is the smoke size."""

    cells: tuple[str, ...] = CELLS
    threads: int = 1
    quick: bool = False
    input_size: int = 40
    hidden_size: int = 128
    layers: int = 2
    output_size: int = 8
    streams: int = 256
    wide_streams: int = 4096  # StreamPool vs one batched session.run only
    partial_ks: tuple[int, ...] = (1, 16, 64, 256)  # k of `streams` stepped (section 2c)
    chunk_sizes: tuple[int, ...] = (1, 8, 32, 128)
    footprint_frames: int = 1000
    footprint_runs: int = 5
    export_repeats: int = 3
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self) -> None:
        bad = [c for c in self.cells if c not in CELLS]
        if bad or not self.cells:
            raise ValueError(f"cells must be a non-empty subset of {CELLS}, got {self.cells!r}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive int, got {self.threads!r}")

    @classmethod
    def quick_setting(cls, cells: tuple[str, ...] = CELLS, threads: int = 1) -> BenchConfig:
        """A tiny model and few iterations: checks the suite runs, measures nothing."""
        return cls(
            cells=cells,
            threads=threads,
            quick=True,
            input_size=8,
            hidden_size=16,
            layers=1,
            output_size=2,
            streams=16,
            wide_streams=64,
            partial_ks=(1, 4, 16),
            footprint_runs=1,
            export_repeats=1,
            budget=Budget(rounds=3, block_s=0.002, warmup_s=0.005, max_calls_per_block=50),
        )

    def spec(self, cell: str) -> RefSpec:
        return RefSpec(cell, self.input_size, self.hidden_size, self.layers, self.output_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = {k: d.pop(k) for k in ("input_size", "hidden_size", "layers", "output_size")}
        return d


def _run_cell(
    spec: RefSpec, config: BenchConfig, workdir: Path, say: Callable[[str, str], None]
) -> dict[str, Any]:
    from edgeseq.bench import _sections as sec
    from edgeseq.bench._footprint import footprint
    from edgeseq.bench._js import js_latency
    from edgeseq.bench._models import prepare
    from edgeseq.bench._partial import partial
    from edgeseq.bench._profile import profile_pool, profile_step

    t, b = config.threads, config.budget
    prep = prepare(spec, workdir, config.export_repeats, lambda m: say("prepare", m))
    if "native" not in prep.files:
        raise RuntimeError(f"native export is required and failed: {prep.missing['native']}")
    native = prep.files["native"]
    out: dict[str, Any] = {"model": spec.to_dict()}
    say("latency", "1 stream × 1 frame: predictor, session.run, PyTorch, Identity")
    out["latency"] = sec.latency(prep, t, b)
    say("streams", f"{config.streams} streams × 1 frame")
    out["streams"] = sec.streams(prep, t, b, config.streams)
    say("streams", f"{config.wide_streams} streams × 1 frame: StreamPool vs one batched run")
    out["streams_wide"] = sec.streams_wide(prep, t, b, config.wide_streams)
    ks = ", ".join(map(str, config.partial_ks))
    say("partial", f"k of {config.streams} streams × 1 frame (k = {ks}): StreamPool vs by hand")
    out["partial"] = partial(native, t, b, config.streams, config.partial_ks, spec.input_size)
    say("chunks", f"chunk sizes {', '.join(map(str, config.chunk_sizes))}")
    out["chunks"] = sec.chunks(prep, t, b, config.chunk_sizes)
    say("modes", f"variants {', '.join(prep.files)}")
    out["modes"] = sec.modes(prep, t, b)
    say("profile", "per-call breakdown of step()")
    out["profile"] = profile_step(native, t, spec.input_size, b, workdir)
    out["profile"]["pool"] = profile_pool(native, t, spec.input_size, config.streams)
    say("footprint", f"{config.footprint_runs}× fresh processes, {config.footprint_frames} frames")
    out["footprint"] = footprint(
        native,
        prep.checkpoint,
        spec.input_size,
        t,
        config.footprint_frames,
        config.footprint_runs,
    )
    out["export"] = sec.export_times(prep)
    say("js", "per-frame latency in Node.js and headless Chromium (runtime-js/)")
    out["js"] = js_latency(native, t, spec.input_size, b)
    return out


def run_bench(
    config: BenchConfig | None = None,
    progress: Progress | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run every section for every cell of ``config``; return the results as a JSON-able dict.

    ``progress`` receives one line as each section starts. Model files go to ``workdir``
    (a temporary folder, removed afterwards, when None).
    """
    import torch

    config = config or BenchConfig()
    report = progress or (lambda _m: None)
    start = time.perf_counter()
    machine = machine_info(config.threads)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    cells: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="edgeseq-bench-") as tmp:
            root = Path(workdir) if workdir is not None else Path(tmp)
            for i, cell in enumerate(config.cells, 1):

                def say(section: str, what: str, i: int = i, cell: str = cell) -> None:
                    elapsed = time.perf_counter() - start
                    report(f"[{i}/{len(config.cells)} {cell}] {section}: {what} ({elapsed:.0f} s)")

                cells[cell] = _run_cell(config.spec(cell), config, root / cell, say)
    finally:
        torch.set_num_threads(old_threads)
    return {
        "schema": 1,
        "machine": machine,
        "config": config.to_dict(),
        "cells": cells,
        "targets": evaluate(cells),
        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "elapsed_s": time.perf_counter() - start,
    }


def write_markdown(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`render` to ``path``, keeping any notes below :data:`NOTES_MARKER`."""
    path = Path(path)
    notes = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1]
    path.write_text(render(results, notes), encoding="utf-8")
    return path
