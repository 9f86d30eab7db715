"""``edgeseq bench --serve``: a real ``edgeseq serve`` under load from client processes.

Measures frames/s and p50/p99 latency (message sent → reply received, at the client) at
several connection counts and frames per message, each beside the in-process
:class:`~edgeseq.runtime.StreamPool` stepping the same number of streams on the same
model; then latency at a fixed offered rate. The server runs in its own process; the
clients run in ``client_processes`` other processes, all on this machine (127.0.0.1).
Needs the ``torch`` extra (it exports its reference model) and the ``serve`` extra.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.bench._report import write_section
from edgeseq.bench._serve_load import Load, run_load
from edgeseq.bench._timing import machine_info, percentile

__all__ = ["SERVE_TARGETS", "ServeBenchConfig", "render_serve", "run_serve_bench", "write_serve"]

BEGIN, END = "<!-- edgeseq bench --serve: begin -->", "<!-- edgeseq bench --serve: end -->"
Progress = Callable[[str], None]

# (what, setting, measure, bound); checked by _targets()
SERVE_TARGETS = [
    ("256 connections × 1 frame", (256, 1), "fps", ">= 10000"),
    ("p99 at 1,000 frames/s from 64 connections", "rate", "p99_ms", "<= 10"),
]


@dataclass(frozen=True)
class ServeBenchConfig:
    """What ``--serve`` measures; :meth:`quick_setting` only checks that it runs."""

    cell: str = "lstm"
    input_size: int = 40
    hidden_size: int = 128
    layers: int = 2
    output_size: int = 8
    connections: tuple[int, ...] = (1, 32, 256)
    frames_per_message: tuple[int, ...] = (1, 10)
    seconds: float = 5.0
    warmup: float = 1.0
    client_processes: int = 4
    rate_connections: int = 64
    rate_fps: float = 1000.0
    threads: int = 1
    quick: bool = False

    @classmethod
    def quick_setting(cls, threads: int = 1) -> ServeBenchConfig:
        return cls(
            input_size=8, hidden_size=16, layers=1, output_size=2, connections=(1, 4),
            frames_per_message=(1, 3), seconds=0.6, warmup=0.2, client_processes=2,
            rate_connections=4, rate_fps=100.0, threads=threads, quick=True,
        )  # fmt: skip


def _export(config: ServeBenchConfig, path: Path) -> Path:
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    cfg = SeqConfig(
        cell=config.cell,
        input_size=config.input_size,
        hidden_size=config.hidden_size,
        layers=config.layers,
        output_size=config.output_size,
    )
    export_model(SeqModel(cfg).eval(), path)
    return path


class _Server:
    """``edgeseq serve`` in a subprocess; its log goes to a file."""

    def __init__(self, model: Path, config: ServeBenchConfig, log: Path) -> None:
        most = max(*config.connections, config.rate_connections)
        cli = "from edgeseq.cli import main; main()"
        args = [sys.executable, "-c", cli, "serve", str(model), "--port", "0"]
        args += ["--max-streams", str(most), "--threads", str(config.threads)]
        args += ["--idle-timeout", "3600", "--save-interval", "0"]
        self.log = log
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log.open("w"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"(ws://\S+)", log.read_text())
            if m:
                self.url = m.group(1)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"edgeseq serve did not start:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _drive(
    url: str, config: ServeBenchConfig, conns: int, fpm: int, interval: float | None
) -> dict:
    """Run ``conns`` connections spread over the client processes; merge their timings."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = min(config.client_processes, conns)
    barrier = ctx.Barrier(procs + 1)
    shares = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    workers = []
    for i, share in enumerate(shares):
        load = Load(url, share, fpm, config.input_size, config.seconds, config.warmup, interval, i)
        workers.append(ctx.Process(target=run_load, args=(load, results, barrier), daemon=True))
    for w in workers:
        w.start()
    # every client process has opened its connections (if one failed, its error is queued)
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(300)
    timeout = config.warmup + config.seconds + 120
    merged: list[int] = []
    frames = sent = 0
    cpu = 0.0
    for _ in workers:
        got = results.get(timeout=timeout)
        if "error" in got:
            raise RuntimeError(f"a client process failed: {got['error']}")
        merged += got["latencies_ns"]
        frames += got["frames"]
        cpu += got["cpu_s"]
        sent += got["sent"]
    for w in workers:
        w.join(30)
    ms = sorted(v / 1e6 for v in merged)
    return {
        "connections": conns,
        "frames_per_message": fpm,
        "client_processes": procs,
        "messages": len(ms),
        "fps": frames / config.seconds,
        "p50_ms": percentile(ms, 50) if ms else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "client_cpu_us_per_message": cpu / sent * 1e6 if sent else None,
    }


def _pool_fps(model: Path, config: ServeBenchConfig, streams: int, fpm: int) -> float:
    """The in-process pool: ``streams`` streams × ``fpm`` frames per batched step."""
    from edgeseq.runtime import StreamPool

    rng = np.random.default_rng(0)
    with StreamPool(model, max_streams=streams, threads=config.threads) as pool:
        ids = [pool.open() for _ in range(streams)]
        shape = (config.input_size,) if fpm == 1 else (fpm, config.input_size)
        frames = {i: rng.standard_normal(shape).astype(np.float32) for i in ids}
        end = time.perf_counter() + config.warmup
        while time.perf_counter() < end:
            pool.step(frames)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < config.seconds:
            pool.step(frames)
            n += 1
        return n * streams * fpm / (time.perf_counter() - start)


def run_serve_bench(
    config: ServeBenchConfig | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Measure every setting of ``config``; the results as a JSON-able dict."""
    config = config or ServeBenchConfig()
    say = progress or (lambda _m: None)
    start = time.perf_counter()
    out: dict[str, Any] = {"config": asdict(config), "machine": machine_info(config.threads)}
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-serve-") as tmp:
        model = _export(config, Path(tmp) / "model.onnx")
        server = _Server(model, config, Path(tmp) / "serve.log")
        settings = []
        try:
            for conns in config.connections:
                for fpm in config.frames_per_message:
                    say(f"serve: {conns} connections × {fpm} frames per message")
                    rec = _drive(server.url, config, conns, fpm, None)
                    rec["pool_fps"] = _pool_fps(model, config, conns, fpm)
                    settings.append(rec)
            rate = config.rate_connections / config.rate_fps  # seconds between one's messages
            offered = f"{config.rate_fps:g} frames/s offered by {config.rate_connections}"
            say(f"serve: {offered} connections")
            out["rate"] = _drive(server.url, config, config.rate_connections, 1, rate)
            out["rate"]["offered_fps"] = config.rate_fps
        finally:
            server.stop()
            out["server_exit"] = server.proc.returncode
    out["settings"] = settings
    out["targets"] = _targets(out)
    out["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out["elapsed_s"] = time.perf_counter() - start
    return out


def _targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for what, setting, measure, bound in SERVE_TARGETS:
        if setting == "rate":
            rec = out.get("rate")
        else:
            rec = next(
                (
                    s
                    for s in out["settings"]
                    if (s["connections"], s["frames_per_message"]) == setting
                ),
                None,
            )
        value = rec.get(measure) if rec and not out["config"]["quick"] else None
        op, limit = bound.split()
        met = (
            None
            if value is None
            else (value >= float(limit) if op == ">=" else value <= float(limit))
        )
        rows.append({"target": what, "bound": f"{measure} {bound}", "value": value, "met": met})
    return rows


def _f(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def render_serve(results: dict[str, Any]) -> str:
    """The results as a markdown section."""
    c, m = results["config"], results["machine"]
    lines = [
        "## Serving over the network (`edgeseq bench --serve`)",
        "",
        f"`edgeseq serve` on the reference {c['cell'].upper()} ({c['input_size']} inputs, "
        f"{c['hidden_size']} hidden × {c['layers']}, {c['threads']} onnxruntime thread), "
        f"clients in {c['client_processes']} separate processes on the same machine "
        f"({m.get('cpu', '?')}, {m.get('cores', '?')} cores), JSON replies, each setting "
        f"{c['seconds']:g} s after {c['warmup']:g} s warm-up. Latency: message sent → reply "
        "received, at the client. *Pool* is the in-process `StreamPool.step` of the same "
        "streams, no network: the ceiling the server approaches."
        + (
            " **Quick setting: these figures check that the benchmark runs; they measure nothing.**"
            if c["quick"]
            else ""
        ),
        "",
        "| connections | frames/message | frames/s | p50 ms | p99 ms | pool frames/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["settings"]:
        lines.append(
            f"| {s['connections']} | {s['frames_per_message']} | {_f(s['fps'], 0)} | "
            f"{_f(s['p50_ms'])} | {_f(s['p99_ms'])} | {_f(s['pool_fps'], 0)} |"
        )
    r = results.get("rate")
    if r:
        lines += [
            "",
            f"Offered {r['offered_fps']:g} frames/s from {r['connections']} connections (1 frame "
            f"per message): achieved {_f(r['fps'], 0)} frames/s, p50 {_f(r['p50_ms'])} ms, "
            f"p99 {_f(r['p99_ms'])} ms.",
        ]
    lines += ["", "| target | bound | measured | |", "|---|---|---:|---|"]
    for t in results["targets"]:
        verdict = "not measured" if t["met"] is None else "met" if t["met"] else "**missed**"
        lines.append(f"| {t['target']} | {t['bound']} | {_f(t['value'])} | {verdict} |")
    load = results.get("loadavg_end")
    if load:
        lines += ["", f"Load average at the end: {load[0]:.2f} (1 min)."]
    return "\n".join(lines) + "\n"


def write_serve(markdown: str, path: str | os.PathLike[str]) -> Path:
    """Put the section into ``path`` between its markers (replacing an older one)."""
    return write_section(markdown, path, BEGIN, END)


# what `edgeseq bench --serve` runs: config class, run, render, write
SECTION = (ServeBenchConfig, run_serve_bench, render_serve, write_serve)
