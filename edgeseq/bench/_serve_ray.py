"""``edgeseq bench --serve-ray``: ``edgeseq serve --ray`` with 1 and 2 replicas beside the
single-process ``edgeseq serve``, under the same load, and the capacity arithmetic.

Each contender is the real command in a subprocess on this machine: the single server, then
a local Ray cluster with one replica, re-sized in place to two (another process joins the
cluster, as an operator would). Clients run in their own processes (``_serve_load``),
closed loop: frames/s and p50/p99 latency (sent → reply, at the client). The CPU time of
every server-side process (the server; or the replicas, and the rest of the cluster: the
Serve proxy, controller, GCS, raylet) is read from ``/proc`` around each setting, which
gives CPU-seconds per frame — the figure the capacity arithmetic scales up.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeseq.bench._procs import Command, cpu_by_kind, rss_mb, tree
from edgeseq.bench._report import write_section
from edgeseq.bench._serve import _drive, _export
from edgeseq.bench._timing import machine_info

__all__ = ["RayBenchConfig", "render_serve_ray", "run_serve_ray_bench", "write_serve_ray"]

BEGIN, END = "<!-- edgeseq bench --serve-ray: begin -->", "<!-- edgeseq bench --serve-ray: end -->"


@dataclass(frozen=True)
class RayBenchConfig:
    """What ``--serve-ray`` measures; :meth:`quick_setting` only checks that it runs."""

    cell: str = "lstm"
    input_size: int = 40
    hidden_size: int = 128
    layers: int = 2
    output_size: int = 8
    connections: int = 64
    frames_per_message: tuple[int, ...] = (1, 10)
    replicas: tuple[int, ...] = (1, 2)
    replica_cpus: float = 1.0
    seconds: float = 5.0
    warmup: float = 1.0
    client_processes: int = 4
    threads: int = 1
    streams_target: int = 1_000_000  # the capacity arithmetic's fleet
    fps_per_stream: float = 10.0
    quick: bool = False

    @classmethod
    def quick_setting(cls, threads: int = 1) -> RayBenchConfig:
        return cls(
            input_size=8, hidden_size=16, layers=1, output_size=2, connections=4,
            frames_per_message=(1,), replica_cpus=0.25, seconds=0.6, warmup=0.2,
            client_processes=2, threads=threads, quick=True,
        )  # fmt: skip


def _measure(cmd: Command, config: RayBenchConfig, fpm: int, replicas: set[int]) -> dict:
    before, t0 = cpu_by_kind(cmd.proc.pid, replicas), time.monotonic()
    rec = _drive(cmd.url, config, config.connections, fpm, None)  # type: ignore[arg-type]
    after, elapsed = cpu_by_kind(cmd.proc.pid, replicas), time.monotonic() - t0
    frames = rec["fps"] * (config.seconds + config.warmup)  # CPU was read around the warm-up too
    used = {k: after[k] - before[k] for k in after}
    per_k = {k: 1000 * v / frames if frames else None for k, v in used.items()}
    if not replicas:  # the single server: one process does everything, per frame
        rec.update(cpu_s_per_kframe=per_k["other"], replica_cpu_s_per_kframe=None,
                   proxy_cpu_s_per_kframe=None, background_cores=None)  # fmt: skip
        return rec
    rec["cpu_s_per_kframe"] = per_k["replicas"] + per_k["proxy"] if frames else None
    rec["replica_cpu_s_per_kframe"] = per_k["replicas"]
    rec["proxy_cpu_s_per_kframe"] = per_k["proxy"]
    rec["background_cores"] = used["other"] / elapsed
    return rec


def _fleet(cmd: Command) -> list[dict]:
    with urllib.request.urlopen(cmd.http + "/v1/replicas", timeout=30) as resp:
        return json.loads(resp.read())["replicas"]


def _scale(cmd: Command, replicas: int) -> None:
    address = cmd.grep(r"Ray at (\S+)")
    token = cmd.grep(r"token in (\S+)\)")
    code = f"from edgeseq.serve import RayFleet; f = RayFleet.attach({address!r}); "
    code += f"f.scale({replicas}); f.detach()"
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=token or "")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    if out.returncode:
        raise RuntimeError(f"scaling to {replicas} replicas failed:\n{out.stderr[-3000:]}")
    deadline = time.monotonic() + 120
    while len(_fleet(cmd)) != replicas or any(r["stopping"] for r in _fleet(cmd)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fleet did not reach {replicas} replicas: {_fleet(cmd)}")
        time.sleep(0.25)


def _state_bytes(model: Path) -> dict[str, int]:
    """Per stream: the recurrent state in memory, and its save in the state folder."""
    import numpy as np

    from edgeseq.runtime import StreamPool

    with StreamPool(model, max_streams=1) as pool:
        snap = pool.snapshot(pool.open())
    state = sum(np.asarray(v).nbytes for v in snap.states.values())
    return {"state": int(state), "snapshot": len(snap.to_bytes())}


def run_serve_ray_bench(
    config: RayBenchConfig | None = None, progress: Any = None
) -> dict[str, Any]:
    """Measure every contender of ``config``; the results as a JSON-able dict."""
    config = config or RayBenchConfig()
    say = progress or (lambda _m: None)
    out: dict[str, Any] = {"config": asdict(config), "machine": machine_info(config.threads)}
    started = time.perf_counter()
    common = ["--port", "0", "--max-streams", str(config.connections + 8)]
    common += ["--threads", str(config.threads), "--idle-timeout", "3600"]
    with tempfile.TemporaryDirectory(prefix="edgeseq-bench-ray-") as tmp:
        model = _export(config, Path(tmp) / "model.onnx")  # type: ignore[arg-type]
        out["bytes_per_stream"] = _state_bytes(model)
        rows = []
        say("serve-ray: edgeseq serve (one process)")
        single = Command(model, [*common, "--save-interval", "0"], Path(tmp) / "serve.log")
        try:
            for fpm in config.frames_per_message:
                rows.append({"contender": "edgeseq serve", "replicas": None,
                             **_measure(single, config, fpm, set())})  # fmt: skip
        finally:
            out["serve_exit"] = single.stop()
        say(f"serve-ray: starting a local Ray cluster ({config.replicas[0]} replica)")
        args = [*common, "--ray", "--replicas", str(config.replicas[0])]
        args += ["--replica-cpus", f"{config.replica_cpus:g}", "--state-dir", f"{tmp}/state"]
        fleet = Command(model, args, Path(tmp) / "ray.log")
        try:
            for n in config.replicas:
                if n != len(_fleet(fleet)):
                    say(f"serve-ray: re-sizing the fleet to {n} replicas")
                    _scale(fleet, n)
                pids = {r["pid"] for r in _fleet(fleet)}
                for fpm in config.frames_per_message:
                    say(f"serve-ray: {n} replica(s), {config.connections} connections × {fpm}")
                    rows.append({"contender": "edgeseq serve --ray", "replicas": n,
                                 **_measure(fleet, config, fpm, pids)})  # fmt: skip
                if n == config.replicas[0]:
                    rest = [p for p in tree([fleet.proc.pid]) if p not in pids]
                    out["memory"] = {
                        "replica_rss_mb": rss_mb(sorted(pids)) / len(pids),
                        "cluster_rss_mb": rss_mb(rest),
                    }
        finally:
            out["ray_exit"] = fleet.stop()
    out["settings"] = rows
    out["capacity"] = _capacity(out)
    out["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out["elapsed_s"] = time.perf_counter() - started
    return out


def _capacity(out: dict[str, Any]) -> dict[str, Any] | None:
    """The fleet for ``streams_target`` streams at ``fps_per_stream``, scaled from the CPU
    each frame cost with one replica: with one frame per message (every reading is a
    message), and ``batched``: cores and replicas at each larger frames-per-message row."""
    c = out["config"]
    rows = {
        s["frames_per_message"]: s
        for s in out["settings"]
        if s["replicas"] == 1 and s["cpu_s_per_kframe"] and s["replica_cpu_s_per_kframe"]
    }
    if not rows:
        return None
    need_fps = c["streams_target"] * c["fps_per_stream"]

    def fleet(s: dict[str, Any]) -> dict[str, Any]:
        replica_cores = need_fps * s["replica_cpu_s_per_kframe"] / 1000
        replicas = max(1, math.ceil(replica_cores))  # a replica: one event loop, ~one core
        return {
            "frames_per_message": s["frames_per_message"],
            "cores": need_fps * s["cpu_s_per_kframe"] / 1000,
            "replica_cores": replica_cores,
            "replicas": replicas,
            "streams_per_replica": c["streams_target"] / replicas,
        }

    first, *more = sorted(rows)
    s = rows[first]
    per, mem = out["bytes_per_stream"], out.get("memory", {})
    base = fleet(s)
    rss = mem.get("replica_rss_mb")
    return {
        **base,
        "fps_needed": need_fps,
        "fps_per_core": 1000 / s["cpu_s_per_kframe"],
        "fps_per_replica_core": 1000 / s["replica_cpu_s_per_kframe"],
        "state_mb_total": c["streams_target"] * per["state"] / 1e6,
        "store_mb_total": c["streams_target"] * per["snapshot"] / 1e6,
        "replica_rss_mb": rss,
        "memory_gb": (
            (base["replicas"] * rss + c["streams_target"] * per["state"] / 1e6) / 1e3
            if rss
            else None
        ),
        "batched": [fleet(rows[f]) for f in more],
    }


def _f(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def render_serve_ray(results: dict[str, Any]) -> str:
    """The results as a markdown section (with the capacity arithmetic)."""
    c, m = results["config"], results["machine"]
    quick = " **Quick setting: these figures check that the benchmark runs; they measure nothing.**"
    lines = [
        "## Beyond one machine (`edgeseq bench --serve-ray`)",
        "",
        f"The reference {c['cell'].upper()} ({c['input_size']} inputs, {c['hidden_size']} hidden "
        f"× {c['layers']}) served by `edgeseq serve` (one process) and by `edgeseq serve --ray` "
        f"(a local Ray cluster; replicas of {c['replica_cpus']:g} CPU, re-sized in place) on "
        f"the same machine ({m.get('cpu', '?')}, {m.get('cores', '?')} cores), "
        f"{c['connections']} connections from {c['client_processes']} client processes, "
        f"closed loop, {c['seconds']:g} s after {c['warmup']:g} s warm-up. Latency: sent → "
        "reply at the client. CPU: seconds of the server's processes per 1,000 frames (Ray: "
        "the replicas and Serve's HTTP proxy); Ray's background (driver, GCS, raylet, Serve "
        "controller, ledger) in cores used while measuring, which does not grow with frames."
        + (quick if c["quick"] else ""),
        "",
        "| server | replicas | frames/message | frames/s | p50 ms | p99 ms | CPU s / 1k frames "
        "| of which replicas | Ray background, cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["settings"]:
        lines.append(
            f"| {s['contender']} | {s['replicas'] or '–'} | {s['frames_per_message']} | "
            f"{_f(s['fps'])} | {_f(s['p50_ms'], 2)} | {_f(s['p99_ms'], 2)} | "
            f"{_f(s['cpu_s_per_kframe'], 3)} | "
            f"{_f(s['replica_cpu_s_per_kframe'], 3) if s['replicas'] else '–'} | "
            f"{_f(s['background_cores'], 2) if s['replicas'] else '–'} |"
        )
    per = results["bytes_per_stream"]
    cap = results.get("capacity")
    lines += [
        "",
        f"Per stream: {per['state']:,} bytes of recurrent state in a replica's pool, "
        f"{per['snapshot']:,} bytes per save in the state folder.",
    ]
    mem = results.get("memory")
    if mem:
        lines += [
            "",
            f"Memory after the first settings: {mem['replica_rss_mb']:,.0f} MB per replica "
            f"process, {mem['cluster_rss_mb']:,.0f} MB for the rest of the local cluster "
            "(driver, GCS, raylet, Serve controller and proxy, ledger).",
        ]
    if cap:
        lines += [
            "",
            f"**Capacity arithmetic** for {c['streams_target']:,} streams × "
            f"{c['fps_per_stream']:g} frames/s with one frame per message "
            f"({cap['fps_needed']:,.0f} frames/s), scaled from the CPU per frame of the "
            f"one-replica row: {_f(cap['fps_per_core'])} frames/s per core of replicas and proxy "
            f"({_f(cap['fps_per_replica_core'])} per replica core) → **{_f(cap['cores'])} "
            f"cores** plus Ray's background per node, {_f(cap['replica_cores'])} of them in "
            f"replicas, i.e. **{cap['replicas']:,} "
            f"replicas** at about one core each (a replica is one event loop and one "
            f"onnxruntime thread) holding {_f(cap['streams_per_replica'])} streams each (set "
            f"`--max-streams` above that); {_f(cap['state_mb_total'])} MB of recurrent state "
            "across the fleet"
            + (
                f", {_f(cap['memory_gb'], 1)} GB of replica memory in all "
                f"({_f(cap['replica_rss_mb'])} MB per replica process)"
                if cap.get("memory_gb")
                else ""
            )
            + f"; {_f(cap['store_mb_total'])} MB in the state folder, rewritten for changed "
            "streams every `--save-interval` seconds. Assumes: linear scaling across nodes "
            "(replicas share only the ledger and the folder), clients on other machines, this "
            "machine's per-core speed, Serve's proxy on every node (its CPU is in the cores)."
            + (
                " Frames batched per message divide the per-message costs:"
                if cap["batched"]
                else ""
            ),
        ]
        for f in cap["batched"]:
            lines.append(
                f"with {f['frames_per_message']} frames per message the same fleet needs "
                f"{_f(f['cores'])} cores and {f['replicas']:,} replicas "
                f"({_f(f['streams_per_replica'])} streams each)."
            )
    load = results.get("loadavg_end")
    if load:
        lines += ["", f"Load average at the end: {load[0]:.2f} (1 min)."]
    lines += ["", "Rerun: `edgeseq bench --serve-ray --out BENCHMARKS.md`."]
    return "\n".join(lines) + "\n"


def write_serve_ray(markdown: str, path: str | os.PathLike[str]) -> Path:
    """Put the section into ``path`` between its markers (replacing an older one)."""
    return write_section(markdown, path, BEGIN, END)


# what `edgeseq bench --serve-ray` runs: config class, run, render, write
SECTION = (RayBenchConfig, run_serve_ray_bench, render_serve_ray, write_serve_ray)
