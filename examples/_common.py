"""Plumbing shared by every example: arguments, quick mode, plots, parity, results.

An example is a script with ``main(argv=None) -> dict``. It calls :func:`start`, which
parses the common options and returns a :class:`Run`; the run prints tables, records
every printed number, checks streaming parity, saves plots, and finally writes
``results.json`` into the example's artifacts directory (``run_all.py`` gathers them).

Quick mode (``--quick`` or ``EDGESEQ_QUICK=1``) trains on a small slice for a few
seconds. Plots of every run go to the artifacts directory, so running an example never
changes the committed gallery in ``examples/plots/``; only a full run with ``--gallery``
(``make plots``) writes there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).resolve().parent
PLOTS = EXAMPLES / "plots"
ARTIFACTS = EXAMPLES / "artifacts"
PARITY_TOL = 1e-5  # chunked vs whole, and ONNX vs PyTorch, max abs difference
PNG_LIMIT = 150_000  # bytes; committed plots stay small


@dataclass
class Run:
    """One run of one example: where its files go and what it measured."""

    name: str
    quick: bool
    seed: int
    out: Path  # models, results.json and plots
    plots: Path  # = out, or examples/plots/ for a gallery refresh (--gallery)
    args: argparse.Namespace | None = None  # the parsed command line
    results: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def path(self, filename: str) -> Path:
        return self.out / filename

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in quick mode, else ``full``: sizes, epochs, slices."""
        return quick if self.quick else full

    def record(self, key: str, value: Any) -> Any:
        self.results[key] = _jsonable(value)
        return value

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Print a table (edgeseq.table format) and keep its rows in the results."""
        from edgeseq.table import format_table

        print(f"\n{title}\n{format_table(headers, rows)}", flush=True)
        self.results.setdefault("tables", {})[title] = {
            "headers": list(headers),
            "rows": _jsonable([list(r) for r in rows]),
        }

    def parity(
        self,
        label: str,
        predictor: Any,
        frames: np.ndarray,
        *,
        reference: np.ndarray | None = None,
        begin: Callable[[], None] | None = None,
        max_chunk: int = 17,
    ) -> float:
        """Stream ``frames`` whole, then in random chunks; assert both agree within 1e-5.

        ``begin`` puts the predictor at the sequence start (default ``predictor.reset``;
        a decoder sets its encoder's state). ``reference``, if given, is PyTorch's output
        for the same frames and must agree within 1e-5 of the outputs' scale
        (``max(1, max|reference|)``: logits of a text model reach tens, and float32 kernels
        differ in their last bits). Returns the chunked-vs-whole difference.
        """
        begin = begin or predictor.reset
        begin()
        whole = np.asarray(predictor.step(frames))
        begin()
        rng = np.random.default_rng(self.seed)
        parts, i = [], 0
        while i < len(frames):
            n = int(rng.integers(1, max_chunk + 1))
            parts.append(
                np.asarray(predictor.step(frames[i : i + n])).reshape(-1, *whole.shape[1:])
            )
            i += n
        chunked = np.concatenate(parts)
        diff = float(np.max(np.abs(chunked - whole)))
        entry: dict[str, Any] = {"frames": len(frames), "chunked_vs_whole": diff}
        text = f"parity [{label}]: {len(frames)} frames, chunked == whole, max |diff| {diff:.1e}"
        text += f" (limit {PARITY_TOL:.0e})"
        ok = diff <= PARITY_TOL
        if reference is not None:
            limit = PARITY_TOL * max(1.0, float(np.max(np.abs(reference))))
            entry["onnx_vs_torch"] = float(np.max(np.abs(whole - reference)))
            entry["onnx_vs_torch_limit"] = limit
            text += f"; ONNX vs PyTorch {entry['onnx_vs_torch']:.1e} (limit {limit:.1e})"
            ok = ok and entry["onnx_vs_torch"] <= limit
        print(text, flush=True)
        self.results.setdefault("parity", {})[label] = entry
        assert ok, f"parity [{label}] failed: {entry}"
        return diff

    def pyplot(self):
        """matplotlib.pyplot on the Agg backend (no display needed)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.rcParams.update(
            {"figure.dpi": 80, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}
        )
        return plt

    def save_plot(self, fig: Any, filename: str) -> Path:
        """Save ``fig`` as a small PNG and close it."""
        self.plots.mkdir(parents=True, exist_ok=True)
        path = self.plots / filename
        fig.tight_layout()
        fig.savefig(path, dpi=80, pil_kwargs={"optimize": True})
        import matplotlib.pyplot as plt

        plt.close(fig)
        size = path.stat().st_size
        print(f"plot: {_show(path)} ({size / 1024:.0f} KB)", flush=True)
        if size > PNG_LIMIT:
            print(f"warning: {path.name} is over {PNG_LIMIT // 1000} KB", file=sys.stderr)
        self.results.setdefault("plots", []).append(_show(path))
        return path

    def finish(self) -> dict[str, Any]:
        """Write ``results.json`` into the artifacts directory and return the results."""
        self.results["seconds"] = round(time.perf_counter() - self.started, 1)
        self.results["quick"] = self.quick
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1) + "\n")
        print(f"\n{self.name}: done in {self.results['seconds']:.1f} s", flush=True)
        return self.results


def start(
    name: str,
    doc: str | None,
    argv: Sequence[str] | None = None,
    add_args: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Run:
    """Parse the common options (and the example's own) and prepare the directories."""
    parser = argparse.ArgumentParser(
        prog=f"examples/{name}.py",
        description=(doc or "").strip().splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="small slice, a few seconds (or EDGESEQ_QUICK=1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (small RNNs: 1 is fastest)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="artifacts directory (default examples/artifacts/NAME)",
    )
    parser.add_argument(
        "--gallery",
        action="store_true",
        help="full run that refreshes the committed plot in examples/plots/ (make plots)",
    )
    if add_args is not None:
        add_args(parser)
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("EDGESEQ_QUICK", "") not in ("", "0")
    if quick and args.gallery:
        parser.error("--gallery refreshes the committed plots from a full run; drop --quick")
    out = args.out or ARTIFACTS / (name + ("-quick" if quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    run = Run(name, quick, args.seed, out, PLOTS if args.gallery else out, args)
    print(f"== {name}{' (quick)' if quick else ''} ==", flush=True)
    import torch

    # Small recurrent models spend more time synchronising threads than computing; on a
    # busy 2-core machine two threads made training 10x slower than one.
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return run


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(EXAMPLES.parent))
    except ValueError:
        return str(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def reuse_option(parser: argparse.ArgumentParser) -> None:
    """``--reuse``: load the weights a previous full run saved instead of training again
    (to rerun the streaming and timing parts on another machine)."""
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the model a previous run of the same configuration saved in the "
        "artifacts directory instead of training it again",
    )


def keep(path: Path, model: Any, config: str, result: Any) -> None:
    """Save ``model``'s weights, its ``config`` (text) and its training ``result``."""
    import dataclasses

    import torch

    torch.save(
        {
            "config": config,
            "state_dict": model.state_dict(),
            "result": json.dumps(dataclasses.asdict(result)),
        },
        path,
    )


def reuse(run: Run, path: Path, model: Any, config: str) -> Any:
    """With ``--reuse``: load what :func:`keep` saved at ``path`` into ``model`` and return
    its training result; None (train) without the option or without a matching file."""
    import torch

    from edgeseq.train.training import EpochLog, TrainResult

    if not getattr(run.args, "reuse", False) or not path.exists():
        return None
    saved = torch.load(path, weights_only=True)
    if saved["config"] != config:
        print(f"--reuse: {path.name} was trained with another configuration; training", flush=True)
        return None
    model.load_state_dict(saved["state_dict"])
    result = TrainResult(**json.loads(saved["result"]))
    result.history = [EpochLog(**e) for e in result.history]  # type: ignore[arg-type]
    print(f"--reuse: loaded {path.name} (trained before, {result.seconds:.0f} s)", flush=True)
    return result
