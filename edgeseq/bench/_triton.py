"""``edgeseq bench --triton``: Triton's python backend beside edgeseq's own serving, same load.

The reference LSTM (40 inputs, 128 hidden, 2 layers, linear head) is exported, written as a
python-backend Triton repository by :func:`~edgeseq.exporters.triton.to_triton`, and served
by the real ``tritonserver`` bundled in the nvidia-pytriton wheel (``scripts/triton-setup``).
Client processes on this machine drive 1 and 32 sequences, 1 frame per request, closed
loop over gRPC; frames/s, p50 and p99 (request sent -> reply received, at the client) and
Triton's average batch are recorded. The same load goes through:

- ``edgeseq serve`` (a subprocess, clients through ``edgeseq.client.StreamClient``), when
  the ``serve`` extra is installed, else it is reported as not available with the reason;
- an in-process ``StreamPool.submit`` (no network, no server): the floor.

Figures depend on the machine and its load: the section records the machine and whether
the run was a quick smoke run.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeseq.bench._report import write_section
from edgeseq.bench._timing import machine_info
from edgeseq.bench._triton_load import Load, run_load

__all__ = ["TritonBenchConfig", "render_triton", "run_triton_bench", "write_triton"]

BEGIN, END = "<!-- edgeseq bench --triton: begin -->", "<!-- edgeseq bench --triton: end -->"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TritonBenchConfig:
    """What ``--triton`` measures; :meth:`quick_setting` only checks that it runs."""

    cell: str = "lstm"
    input_size: int = 40
    hidden_size: int = 128
    layers: int = 2
    output_size: int = 8
    sequences: tuple[int, ...] = (1, 32)
    frames: int = 1
    seconds: float = 10.0
    warmup: float = 2.0
    client_processes: int = 4
    threads: int = 1  # onnxruntime intra-op threads inside each server
    quick: bool = False

    @classmethod
    def quick_setting(cls, threads: int = 1) -> TritonBenchConfig:
        return cls(input_size=3, hidden_size=8, output_size=2, sequences=(1, 4), seconds=1.5,
                   warmup=0.5, client_processes=2, threads=threads, quick=True)  # fmt: skip


def _model(config: TritonBenchConfig, folder: Path) -> Path:
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    cfg = SeqConfig(cell=config.cell, input_size=config.input_size, layers=config.layers,
                    hidden_size=config.hidden_size, output_size=config.output_size)  # fmt: skip
    path = folder / "reference.onnx"
    export_model(SeqModel(cfg), path)
    return path


def _triton(config: TritonBenchConfig, path: Path, folder: Path, progress: Progress) -> dict:
    from edgeseq.exporters.triton import TritonOptions, to_triton
    from edgeseq.exporters.triton.server import TritonServer, TritonUnavailable

    opts = TritonOptions(max_batch=max(config.sequences), threads=config.threads)
    to_triton(path, folder / "repo", name="ref", backend="python", options=opts)
    try:
        server = TritonServer(folder / "repo").start()
    except TritonUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    import tritonclient.grpc as g

    results: dict[str, Any] = {"available": True, "settings": {}}
    try:
        client = g.InferenceServerClient(server.grpc_url)
        for n in config.sequences:
            progress(f"triton python backend: {n} sequences × {config.frames} frame(s)")
            before = _stats(client)
            load = Load("triton", server.grpc_url, "ref", n, config.frames, config.input_size,
                        config.seconds, config.warmup, first_id=1 + 1000 * n)  # fmt: skip
            r = run_load(load, config.client_processes)
            served, runs = (a - b for a, b in zip(_stats(client), before))
            r["avg_batch"] = served / runs if runs else None
            results["settings"][str(n)] = r
    finally:
        server.stop()
    return results


def _stats(client: Any) -> tuple[int, int]:
    m = client.get_inference_statistics("ref").model_stats[0]
    return int(m.inference_count), int(m.execution_count)


def _pool(config: TritonBenchConfig, path: Path, progress: Progress) -> dict:
    results: dict[str, Any] = {"available": True, "settings": {}}
    for n in config.sequences:
        progress(f"in-process StreamPool.submit: {n} sequences × {config.frames} frame(s)")
        load = Load("pool", str(path), "", n, config.frames, config.input_size,
                    config.seconds, config.warmup)  # fmt: skip
        results["settings"][str(n)] = run_load(load, 1)
    return results


def _serve(config: TritonBenchConfig, path: Path, folder: Path, progress: Progress) -> dict:
    """The same load through ``edgeseq serve`` (a subprocess) and its Python client."""
    if importlib.util.find_spec("edgeseq.serve") is None or (
        importlib.util.find_spec("websockets") is None
    ):
        return {"available": False, "reason": "needs the serve extra: pip install 'edgeseq[serve]'"}
    from edgeseq.bench._serve import ServeBenchConfig, _Server

    most = max(config.sequences)
    spec = ServeBenchConfig(connections=(most,), rate_connections=most, threads=config.threads)
    server = _Server(path, spec, folder / "serve.log")
    results: dict[str, Any] = {"available": True, "settings": {}}
    try:
        for n in config.sequences:
            progress(f"edgeseq serve: {n} sequences × {config.frames} frame(s)")
            load = Load("serve", server.url, "", n, config.frames, config.input_size,
                        config.seconds, config.warmup)  # fmt: skip
            results["settings"][str(n)] = run_load(load, config.client_processes)
    finally:
        server.stop()
    return results


def run_triton_bench(config: TritonBenchConfig, progress: Progress = lambda _: None) -> dict:
    """Measure every contender at every sequence count; JSON-able results."""
    import warnings

    with tempfile.TemporaryDirectory(prefix="edgeseq-triton-bench-") as tmp:
        folder = Path(tmp)
        progress(f"exporting the reference {config.cell} ({config.hidden_size} hidden)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = _model(config, folder)
        contenders = {
            "Triton python backend (gRPC)": _triton(config, path, folder, progress),
            "edgeseq serve (WebSocket)": _serve(config, path, folder, progress),
            "StreamPool.submit in process": _pool(config, path, progress),
        }
    return {"config": asdict(config), "machine": machine_info(config.threads),
            "contenders": contenders}  # fmt: skip


def render_triton(results: dict) -> str:
    """The markdown section (without its markers): one row per contender and sequence
    count."""
    from edgeseq.table import format_table

    c = results["config"]
    rows = []
    for name, r in results["contenders"].items():
        if not r.get("available"):
            rows.append((name, "-", "not available", "-", "-", "-"))
            continue
        for n, s in r["settings"].items():
            batch = f"{s['avg_batch']:.1f}" if s.get("avg_batch") else "-"
            rows.append((name, n, f"{s['fps']:,.0f}", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
                         batch))  # fmt: skip
    m = results["machine"]
    head = [
        "## Serving: Triton's python backend beside edgeseq",
        "",
        f"Reference {c['cell']} ({c['input_size']} inputs, {c['hidden_size']} hidden, "
        f"{c['layers']} layers), {c['frames']} frame per request, closed loop, "
        f"{c['seconds']:g} s per setting after {c['warmup']:g} s warm-up; clients in "
        f"{c['client_processes']} processes on the same machine; {c['threads']} onnxruntime "
        "thread(s) per server." + (" QUICK SMOKE RUN: not a measurement." if c["quick"] else ""),
        "",
        format_table(
            ["contender", "sequences", "frames/s", "p50 ms", "p99 ms", "avg batch"],
            rows,
            markdown=True,
        ),
        "",
    ]
    for name, r in results["contenders"].items():
        if not r.get("available"):
            head.append(f"- {name}: not available ({r['reason']})")
    head += [
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores; rerun: "
        "`edgeseq bench --triton --out BENCHMARKS.md`.",
    ]
    return "\n".join(head) + "\n"


def write_triton(markdown: str, path: str | Path) -> Path:
    """Replace this section of ``path`` (or append it), leaving everything else as it is."""
    return write_section(markdown, path, BEGIN, END)


# what `edgeseq bench --triton` runs: config class, run, render, write
SECTION = (TritonBenchConfig, run_triton_bench, render_triton, write_triton)
