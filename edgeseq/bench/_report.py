"""The suite's markdown report, computed from the results JSON alone."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseq.bench._js import js_tables
from edgeseq.bench._partial import partial_tables
from edgeseq.bench._targets import NA, RECURRENT_OPS, TARGETS, Cell
from edgeseq.bench._timing import time_text as _us
from edgeseq.table import format_table

__all__ = ["NOTES_MARKER", "render", "write_section"]

NOTES_MARKER = "<!-- notes: `edgeseq bench --out` keeps everything below this line -->"


def _timed(rec: Any) -> str:
    """``median (p10–p90)`` of a per-call record, or the reason it is missing."""
    if not rec or not rec.get("available"):
        return NA
    return f"{_us(rec['median'])} ({_us(rec['p10'])}–{_us(rec['p90'])})"


def _rate(rec: Any) -> str:
    if not rec or not rec.get("available"):
        return NA
    return f"{rec['fps']:,.0f} ({rec['fps_p10']:,.0f}–{rec['fps_p90']:,.0f})"


def _figure(target: dict[str, Any], res: dict[str, Any]) -> str:
    if res["status"] == NA:
        return NA
    unit = next(t.unit for t in TARGETS if t.key == target["key"])
    return f"{res['value']:.3g}{unit} {res['status']}"


def _targets_table(results: dict[str, Any]) -> str:
    cells = list(results["cells"])
    rows = [
        [t["text"], t["goal"], *(_figure(t, t["results"][c]) for c in cells)]
        for t in results["targets"]
    ]
    return format_table(["target", "goal", *cells], rows, markdown=True)


def _section_tables(results: dict[str, Any]) -> list[str]:
    cells = results["cells"]
    out = ["## 1. Per-frame latency: one stream, one frame per call", ""]
    out.append(
        format_table(
            [
                "cell",
                "StreamingPredictor",
                "session.run loop",
                "PyTorch eager",
                "PyTorch eager, oneDNN off",
                "Identity floor",
            ],
            [[c, *(_timed(d["latency"].get(k)) for k in _LATENCY)] for c, d in cells.items()],
            markdown=True,
        )
    )
    n = next(iter(cells.values()))["streams"]["streams"]
    out += ["", f"## 2. {n} streams × 1 frame per round: frames/s", ""]
    out.append(
        format_table(
            [
                "cell",
                "StreamPool.step (dict)",
                "StreamPool.step_rows (array)",
                "loop of predictors",
                "ORT batched, hand-written",
                "PyTorch batched",
            ],
            [[c, *(_rate(d["streams"].get(k)) for k in _STREAMS)] for c, d in cells.items()],
            markdown=True,
        )
    )
    wide = {c: d["streams_wide"] for c, d in cells.items() if "streams_wide" in d}
    if wide:
        w = next(iter(wide.values()))["streams"]
        out += ["", f"At {w} streams × 1 frame (frames/s):", ""]
        rows = [[c, *(_rate(r.get(k)) for k in _WIDE)] for c, r in wide.items()]
        head = ["cell", "StreamPool.step (dict)", "StreamPool.step_rows (array)"]
        out.append(format_table([*head, "ORT batched, hand-written"], rows, markdown=True))
    out += partial_tables(cells)
    sizes = list(next(iter(cells.values()))["chunks"])
    out += ["", "## 3. One stream, T frames per call: frames/s", ""]
    out.append(
        format_table(
            ["cell", *(f"T = {t}" for t in sizes)],
            [[c, *(_rate(d["chunks"][t]) for t in sizes)] for c, d in cells.items()],
            markdown=True,
        )
    )
    out += ["", "## 4. Export modes and precisions: latency, throughput, file size, drift", ""]
    rows = []
    for c, d in cells.items():
        native = d["modes"].get("native", {})
        for v, rec in d["modes"].items():
            if not rec.get("available"):
                rows.append([c, v, f"{NA}: {rec['reason']}", "", "", "", "", ""])
                continue
            rows.append(
                [
                    c,
                    v,
                    _timed(rec) + _fixed_chunk(rec),
                    f"{rec['median'] / native['median']:.2f}×",
                    f"{rec['chunk_fps']:,.0f}",
                    f"{rec['size_bytes'] / 1e3:,.0f} kB",
                    f"{rec['size_bytes'] / native['size_bytes']:.2f}×",
                    f"{rec['max_abs_diff_vs_native']:.2g}",
                ]
            )
    t = next(iter(cells.values()))["modes"]["native"]["chunk"]
    headers = ["cell", "variant", "per frame", "× native", f"frames/s at T={t}", "file"]
    headers += ["× native", "max |Δy| vs native"]
    out.append(format_table(headers, rows, markdown=True))
    return out


def _fixed_chunk(rec: dict[str, Any]) -> str:
    """How a fixed-chunk graph ran one frame: its one-step graph, or padded to the chunk."""
    if not rec.get("graph_chunk") or rec["graph_chunk"] == 1:
        return ""
    if rec.get("step_graph"):
        return f", one-step graph (chunk {rec['graph_chunk']})"
    return f", pads to {rec['graph_chunk']}"


_LATENCY = ("predictor", "session_run", "torch_eager", "torch_eager_no_onednn", "identity")
_STREAMS = ("pool", "pool_rows", "loop_predictors", "ort_batched", "torch_batched")
_WIDE = ("pool", "pool_rows", "ort_batched")


def _footprint_tables(results: dict[str, Any]) -> list[str]:
    cells = results["cells"]
    frames = next(iter(cells.values()))["footprint"]["frames"]
    out = [f"## 5. Footprint: a fresh process that loads the model and streams {frames} frames", ""]
    rows = []
    for c, d in cells.items():
        for proc, label in (
            ("runtime", "edgeseq.runtime"),
            ("torch", "PyTorch"),
            ("python", "bare python"),
        ):
            r = d["footprint"][proc]
            ph = r["phases_s"]
            rows.append(
                [
                    c,
                    label,
                    f"{r['wall_s']:.3f} ({r['wall_min_s']:.3f}–{r['wall_max_s']:.3f})",
                    f"{r['rss_mb']:.1f} ({r['rss_mb'] * 1e6 / 2**20:.1f} MiB)"
                    if r["rss_mb"] is not None
                    else NA,
                    *(
                        f"{ph[k]:.3f}" if k in ph else ""
                        for k in ("import_s", "load_s", "stream_s")
                    ),
                ]
            )
    headers = [
        "cell",
        "process",
        "wall s (min–max)",
        "peak RSS MB",
        "import s",
        "load s",
        "stream s",
    ]
    out.append(format_table(headers, rows, markdown=True))
    for c, d in cells.items():
        after = d["footprint"]["runtime"].get("rss_after_mb") or {}
        if after:
            steps = " → ".join(f"{k} {v:.1f}" for k, v in after.items())
            out += ["", f"{c}, runtime process, resident MB after each step: {steps}."]
    out += [
        "",
        "## 6. Export time per variant (s, median after a warm-up; quantize times its report too)",
        "",
    ]
    variants = ["native", "native_lengths", "unrolled", "int8", "fp16", "ort"]
    rows = []
    for c, d in cells.items():
        rows.append(
            [
                c,
                *(
                    f"{d['export'][v]['median_s']:.3f}"
                    if d["export"].get(v, {}).get("available")
                    else NA
                    for v in variants
                ),
            ]
        )
    out.append(format_table(["cell", *variants], rows, markdown=True))
    return out


def _profile_tables(results: dict[str, Any]) -> list[str]:
    cells = results["cells"]
    out = ["## Where the time goes: one `step()` call, one frame", ""]
    med = lambda p, k: p[k]["median"]  # noqa: E731
    layers: list[tuple[str, Callable[[Cell, Cell], float]]] = [
        ("`step()`", lambda p, lat: med(p, "step")),
        ("IO-binding ping-pong, same session, no edgeseq code", lambda p, lat: med(p, "iobinding")),
        (
            "`session.run`, same session, numpy feed built once",
            lambda p, lat: med(p, "session_run"),
        ),
        (
            "Identity model `session.run` (onnxruntime's fixed cost)",
            lambda p, lat: med(lat, "identity"),
        ),
        (
            "→ edgeseq Python per call (step − ping-pong)",
            lambda p, lat: med(p, "step") - med(p, "iobinding"),
        ),
        (
            "→ numpy feed and fetch (session.run − ping-pong)",
            lambda p, lat: med(p, "session_run") - med(p, "iobinding"),
        ),
        (
            "→ the graph's own work (ping-pong − Identity)",
            lambda p, lat: med(p, "iobinding") - med(lat, "identity"),
        ),
    ]
    rows = [
        [name, *(_us(f(d["profile"], d["latency"])) for d in cells.values())] for name, f in layers
    ]
    out.append(format_table(["per call (medians, interleaved)", *cells], rows, markdown=True))
    out += ["", "Share of kernel time by op type (onnxruntime profiler):", ""]
    for c, d in cells.items():
        op_share = d["profile"]["op_share"]
        shares = ", ".join(f"{k} {v:.0%}" for k, v in list(op_share.items())[:6])
        rec = sum(v for k, v in op_share.items() if k in RECURRENT_OPS)
        head = op_share.get("MatMul", 0.0) + op_share.get("Add", 0.0)  # the linear head
        outside = f"{rec / (1 - head):.2f}" if head < 1 else "n/a"
        out.append(
            f"- {c}: {shares} (recurrent ops: {rec:.2f} of all kernel time; {outside} of the "
            "time outside the model's linear head, MatMul + Add)"
        )
    first, d = next(iter(cells.items()))
    out += [
        "",
        f"Python functions by own time per `step()` ({first}). cProfile inflates Python "
        "time, and a C call it cannot see (one made through functools.partial) counts as "
        "its caller's own time:",
        "",
    ]
    rows = [
        [r["function"], f"{r['calls_per_step']:.2g}", _us(r["own_s_per_step"])]
        for r in d["profile"]["cprofile"]
    ]
    out.append(
        format_table(["function", "calls per step", "own time per step"], rows, markdown=True)
    )
    pool = d["profile"].get("pool", {})
    if pool.get("available"):
        lat = d["streams"]
        out += [
            "",
            f"`StreamPool.step` over {pool['streams']} streams ({first}): "
            f"{_us(lat['pool']['median'])} per call against {_us(lat['ort_batched']['median'])} "
            "for one hand-written batched `session.run` of the same rows. Python functions "
            "by own time per call (cProfile):",
            "",
        ]
        rows = [
            [r["function"], f"{r['calls_per_step']:.3g}", _us(r["own_s_per_step"])]
            for r in pool["cprofile"]
        ]
        out.append(
            format_table(["function", "calls per step", "own time per step"], rows, markdown=True)
        )
    return out


def _load(pair: list[float] | None) -> str:
    return f"{pair[0]:.2f}" if pair else "n/a"


def _intro(results: dict[str, Any]) -> str:
    m, cfg = results["machine"], results["config"]
    spec = cfg["model"]
    cmd = "edgeseq bench"
    cmd += f" --threads {m['threads']}" if m["threads"] != 1 else ""
    cmd += " --quick" if cfg["quick"] else ""
    return (
        f"Measured by `{cmd}` on {m['date']}: {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}, numpy {m['numpy']}, onnxruntime {m['onnxruntime']}, "
        f"torch {m['torch']}; {m['threads']} onnxruntime/PyTorch thread(s). Reference model "
        f"per cell: {spec['input_size']} inputs → {spec['hidden_size']} hidden × "
        f"{spec['layers']} layers → linear {spec['output_size']}. Figures are medians of "
        "per-call wall times with the 10th–90th percentile in brackets; the contenders of a "
        "section run interleaved in the same rounds. Load average (1 min): "
        f"{_load(m['loadavg_start'])} at the start, {_load(results['loadavg_end'])} at the "
        f"end; the run took {results['elapsed_s']:.0f} s.{_provenance(m.get('source'))}"
    )


def _provenance(source: dict[str, Any] | None) -> str:
    if not source:
        return ""
    changed = source["modified_files"]
    extra = f" plus uncommitted changes to {', '.join(changed)}" if changed else ""
    return f" Source measured: commit {source['commit']}{extra}."


def render(results: dict[str, Any], notes: str = "") -> str:
    """The whole BENCHMARKS.md text: intro, targets, sections, profile, machine, notes."""
    head = ["# edgeseq benchmarks", "", _intro(results), ""]
    if results["config"]["quick"]:
        head += [
            "**Quick setting: a tiny model and few iterations. These figures only show that "
            "the suite runs; they say nothing about speed.**",
            "",
        ]
    head += ["## Targets", ""]
    head += [_targets_table(results), ""]
    body = [*_section_tables(results), "", *_footprint_tables(results), ""]
    body += _profile_tables(results)
    body += ["", *js_tables(results)]
    machine = ["", "## Machine", "", "```json", _json(results["machine"]), "```", ""]
    return "\n".join([*head, *body, *machine, NOTES_MARKER, notes.strip("\n"), ""])


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True)


def write_section(markdown: str, path: str | os.PathLike[str], begin: str, end: str) -> Path:
    """Put ``markdown`` into ``path`` between the ``begin`` and ``end`` marker lines.

    An older section there (from its ``begin`` to the first ``end`` after it, with the
    line break that ends it) is replaced, and the rest of the file is kept byte for byte;
    without one, the section is appended after one blank line. Every ``edgeseq bench
    --serve``, ``--serve-ray`` and ``--triton`` section is written by this."""
    path = Path(path)
    block = f"{begin}\n{markdown}{end}\n"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    start = old.find(begin)
    stop = old.find(end, start + len(begin)) if start >= 0 else -1
    if stop >= 0:
        stop += len(end) + old.startswith("\n", stop + len(end))
        new = old[:start] + block + old[stop:]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    path.write_text(new, encoding="utf-8")
    return path
