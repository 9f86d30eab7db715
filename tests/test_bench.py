"""The benchmark suite on a tiny setting: every section, and honest arithmetic.

Benchmarks are not tests, so no figure is held to a speed here. What is checked: the
suite runs, writes its JSON and markdown and keeps hand-written notes; every timed record
is consistent (p10 <= median <= p90, rates = frames per call / time); and every ratio the
report states (targets, "x native") is computed from the timings it reports.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgeseq.bench import NOTES_MARKER, SECTIONS, TARGETS, BenchConfig, Budget, interleave
from edgeseq.cli import main

STAT_KEYS = {"median", "p10", "p90", "n"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """One ``edgeseq bench --quick`` run for the whole module (about 10 s)."""
    tmp = tmp_path_factory.mktemp("bench")
    out, js = tmp / "BENCH.md", tmp / "bench.json"
    out.write_text(f"old figures\n{NOTES_MARKER}\nhand-written finding\n")
    result = CliRunner().invoke(
        main, ["bench", "--quick", "--cells", "lstm", "--out", str(out), "--json", str(js)]
    )
    assert result.exit_code == 0, result.output
    return json.loads(js.read_text()), result.output, out


def test_json_has_machine_info_and_every_section(quick_run: tuple[dict, str, Path]) -> None:
    results, _, _ = quick_run
    machine = results["machine"]
    for key in ("cpu", "cores", "python", "numpy", "onnxruntime", "torch", "threads", "env"):
        assert key in machine, key
    assert "OPENBLAS_CORETYPE" in machine["env"]
    assert machine["threads"] == 1
    cell = results["cells"]["lstm"]
    assert set(SECTIONS) <= set(cell)
    for name in ("predictor", "session_run", "torch_eager", "identity"):
        assert set(cell["latency"][name]) >= STAT_KEYS, name
    for name in ("pool", "pool_rows", "loop_predictors", "ort_batched", "torch_batched"):
        rec = cell["streams"][name]
        assert "fps" in rec or rec["available"] is False, name
    for name in ("pool", "pool_rows", "ort_batched"):  # 2b: both pool APIs, side by side
        assert "fps" in cell["streams_wide"][name], name
    assert set(cell["chunks"]) == {"1", "8", "32", "128"}
    assert cell["modes"]["native"]["size_bytes"] > 0
    for variant in ("unrolled", "int8", "fp16", "ort"):
        rec = cell["modes"][variant]
        assert (rec["available"] is False and rec["reason"]) or "size_bytes" in rec, variant
    runtime = cell["footprint"]["runtime"]
    assert runtime["wall_s"] > 0 and runtime["onnx_imported"] in (True, False)
    assert cell["footprint"]["torch"]["wall_s"] > 0
    assert cell["export"]["native"]["median_s"] > 0


def test_partial_steps_beside_the_hand_written_gathered_call(
    quick_run: tuple[dict, str, Path],
) -> None:
    """Section 2c: k of N streams through step_rows and by hand, each k's ratio printed."""
    results, printed, _ = quick_run
    section = results["cells"]["lstm"]["partial"]
    assert section["streams"] == 16 and list(section["k"]) == ["1", "4", "16"]
    assert "Stepping k of 16 open streams" in printed
    for k, rec in section["k"].items():
        assert rec["pool_rows"]["frames_per_call"] == int(k)
        ratio = rec["pool_rows"]["median"] / rec["ort_gathered"]["median"]
        assert f"{ratio:.2f}× (" in printed, k


def test_javascript_runtimes_beside_python(quick_run: tuple[dict, str, Path]) -> None:
    """Section 7 times runtime-js in Node.js and Chromium; a missing browser is reported
    with the reason (and only off CI, where .ci/run installs it)."""
    results, printed, _ = quick_run
    js = results["cells"]["lstm"]["js"]
    for runtime in ("python", "node", "browser"):
        rec = js[runtime]
        if runtime == "browser" and "predictor" not in rec and not os.environ.get("CI"):
            assert "chromium" in rec["reason"].lower(), rec
            continue
        for name in ("predictor", "session_run"):
            assert set(rec[name]) >= STAT_KEYS and rec[name]["median"] > 0, (runtime, rec)
    assert "## 7. JavaScript" in printed and "Node.js (onnxruntime-node" in printed


def test_every_target_is_evaluated(quick_run: tuple[dict, str, Path]) -> None:
    results, _, _ = quick_run
    keys = [t["key"] for t in results["targets"]]
    assert keys == [t.key for t in TARGETS]
    for t in results["targets"]:
        assert t["results"]["lstm"]["status"] in {"met", "missed", "not available"}


def test_markdown_table_printed_and_notes_kept(quick_run: tuple[dict, str, Path]) -> None:
    _, printed, out = quick_run
    for text in ("## Targets", "| target", "## 1.", "## 5.", "## Where the time goes"):
        assert text in printed, text
    for t in TARGETS:
        assert t.text in printed, t.text
    written = out.read_text()
    assert "old figures" not in written
    assert written.rstrip().endswith("hand-written finding")
    assert written.count(NOTES_MARKER) == 1


def test_interleave_times_every_contender() -> None:
    calls = {"a": lambda: sum(range(10)), "b": lambda: None}
    stats = interleave(calls, Budget(rounds=3, block_s=0.001, warmup_s=0.001))
    assert set(stats) == {"a", "b"}
    for s in stats.values():
        assert 0 < s.p10 <= s.median <= s.p90 and s.n >= 3


def test_config_refuses_unknown_cells() -> None:
    with pytest.raises(ValueError, match="cells"):
        BenchConfig(cells=("lstm", "transformer"))
    result = CliRunner().invoke(main, ["bench", "--cells", "tcn"])
    assert result.exit_code != 0 and "lstm, gru, rnn" in result.output


def _timed_records(cell: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [(f"latency.{k}", r) for k, r in cell["latency"].items()]
    found += [(f"streams.{k}", r) for k, r in cell["streams"].items() if isinstance(r, dict)]
    found += [(f"chunks.{k}", r) for k, r in cell["chunks"].items()]
    found += [
        (f"partial.{k}.{name}", r)
        for k, recs in cell["partial"]["k"].items()
        for name, r in recs.items()
    ]
    found += [(f"modes.{k}", r) for k, r in cell["modes"].items()]
    return [(name, r) for name, r in found if r.get("available")]


def test_every_timed_record_is_consistent(quick_run: tuple[dict, str, Path]) -> None:
    cell = quick_run[0]["cells"]["lstm"]
    records = _timed_records(cell)
    names = {n for n, _ in records}
    want = {f"latency.{k}" for k in ("predictor", "session_run", "torch_eager", "identity")}
    want |= {f"streams.{k}" for k in ("pool", "pool_rows", "loop_predictors", "ort_batched")}
    want |= {f"chunks.{k}" for k in ("1", "8", "32", "128")}
    want |= {f"partial.{k}.{n}" for k in ("1", "4", "16") for n in ("pool_rows", "ort_gathered")}
    want |= {f"modes.{k}" for k in ("native", "unrolled", "int8", "fp16", "ort")}
    assert want <= names, sorted(want - names)
    for name, r in records:
        assert r["n"] >= 1 and 0 < r["p10"] <= r["median"] <= r["p90"], name
        k = r["frames_per_call"]
        assert r["fps"] == pytest.approx(k / r["median"], rel=1e-9), name
        assert r["fps_p10"] == pytest.approx(k / r["p90"], rel=1e-9), name
        assert r["fps_p90"] == pytest.approx(k / r["p10"], rel=1e-9), name
    sizes = [r["frames_per_call"] for r in cell["chunks"].values()]
    assert [int(t) for t in cell["chunks"]] == sizes
    for variant, r in cell["export"].items():
        if r.get("available"):
            assert r["median_s"] == pytest.approx(statistics.median(r["runs_s"])), variant
    for proc in ("runtime", "torch", "python"):
        f = cell["footprint"][proc]
        assert f["wall_min_s"] <= f["wall_s"] <= f["wall_max_s"], proc


def test_every_reported_ratio_is_computed_from_the_reported_timings(
    quick_run: tuple[dict, str, Path],
) -> None:
    results, printed, _ = quick_run
    c = results["cells"]["lstm"]
    lat, streams, chunks, modes = c["latency"], c["streams"], c["chunks"], c["modes"]
    runtime = c["footprint"]["runtime"]
    expected = {  # each target's figure, recomputed here from the records themselves
        "predictor_vs_session_run": lat["predictor"]["median"] / lat["session_run"]["median"],
        "predictor_vs_identity": lat["predictor"]["median"] / lat["identity"]["median"],
        "torch_eager_speedup": lat["torch_eager"]["median"] / lat["predictor"]["median"],
        "pool_vs_loop": streams["pool"]["fps"] / streams["loop_predictors"]["fps"],
        "pool_vs_ort_batched": streams["pool_rows"]["median"] / streams["ort_batched"]["median"],
        "pool_vs_ort_batched_wide": c["streams_wide"]["pool_rows"]["median"]
        / c["streams_wide"]["ort_batched"]["median"],
        "pool_partial_vs_gathered": c["partial"]["k"]["16"]["pool_rows"]["median"]
        / c["partial"]["k"]["16"]["ort_gathered"]["median"],  # quick: k = 1, 4, 16 of 16
        "recurrent_kernel_share": sum(
            v for k, v in c["profile"]["op_share"].items() if k in ("LSTM", "GRU", "RNN")
        ),
        "chunk32_vs_chunk1": chunks["32"]["fps"] / chunks["1"]["fps"],
        "unrolled_per_frame": modes["unrolled"]["median"] / modes["native"]["median"],
        "int8_size": modes["int8"]["size_bytes"] / modes["native"]["size_bytes"],
        "int8_latency": modes["int8"]["median"] / modes["native"]["median"],
        "runtime_wall": runtime["wall_s"],
        "runtime_rss": runtime["rss_mb"],
    }
    assert set(expected) == {t.key for t in TARGETS}  # a new target needs its line above
    limits = {t.key: t for t in TARGETS}
    for rec in results["targets"]:
        res, target = rec["results"]["lstm"], limits[rec["key"]]
        assert res["status"] != "not available", (rec["key"], res)  # all measured here
        assert res["value"] == pytest.approx(expected[rec["key"]], rel=1e-12), rec["key"]
        met = res["value"] <= target.limit if target.kind == "max" else res["value"] >= target.limit
        assert res["status"] == ("met" if met else "missed"), rec["key"]
        shown = f"{res['value']:.3g}{target.unit} {res['status']}"
        assert shown in printed, (rec["key"], shown)
    shares = c["profile"]["op_share"]  # the profile line: with and without the linear head
    rec, head = expected["recurrent_kernel_share"], shares.get("MatMul", 0) + shares.get("Add", 0)
    assert (
        f"recurrent ops: {rec:.2f} of all kernel time; {rec / (1 - head):.2f} of the time "
        "outside the model's linear head"
    ) in printed
    for variant, r in modes.items():  # section 4's "x native" columns
        if r.get("available"):
            assert f"{r['median'] / modes['native']['median']:.2f}×" in printed, variant
            assert f"{r['size_bytes'] / modes['native']['size_bytes']:.2f}×" in printed, variant


B, E = "<!-- s: begin -->", "<!-- s: end -->"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, f"{B}\nnew\n{E}\n"),  # no file yet: just the block
        ("", f"{B}\nnew\n{E}\n"),
        ("text\n", f"text\n\n{B}\nnew\n{E}\n"),  # appended after one blank line
        ("text", f"text\n\n{B}\nnew\n{E}\n"),
        ("text\n\n\n", f"text\n\n{B}\nnew\n{E}\n"),
        # replaced; what follows its end line is kept byte for byte, blank lines too
        (
            f"# figures\n\n{B}\nold\n{E}\n\n\nnotes kept\n",
            f"# figures\n\n{B}\nnew\n{E}\n\n\nnotes kept\n",
        ),
        (f"{B}\nold\n{E}\n<!-- t: begin -->\n", f"{B}\nnew\n{E}\n<!-- t: begin -->\n"),
        (f"a\n{B}\nold\nlines\n{E}", f"a\n{B}\nnew\n{E}\n"),  # no line break after it
        (f"{E}\n{B}\nold\n{E}\ntail", f"{E}\n{B}\nnew\n{E}\ntail"),  # the end after begin
    ],
)
def test_write_section_replaces_its_own_block_and_keeps_the_rest(
    tmp_path: Path, before: str | None, after: str
) -> None:
    """The writer every ``bench`` section shares (--serve, --serve-ray, --triton): one
    block between its markers, the rest of the file as it was."""
    from edgeseq.bench._report import write_section

    doc = tmp_path / "B.md"
    if before is not None:
        doc.write_text(before)
    assert write_section("new\n", doc, B, E) == doc
    assert doc.read_text() == after
    write_section("new\n", doc, B, E)
    assert doc.read_text() == after  # written again: the same file


def test_the_triton_section_writes_through_write_section(tmp_path: Path) -> None:
    """``write_triton`` is ``write_section`` with the triton markers: a section written
    into a file with other sections replaces only its own, and rewriting the sections of
    this repository's BENCHMARKS.md with what they hold leaves it byte for byte."""
    from edgeseq.bench import _serve, _serve_ray, _triton

    doc = tmp_path / "B.md"
    doc.write_text("# Benchmarks\n\nother figures\n")
    _serve.write_serve("serve figures\n", doc)
    _triton.write_triton("triton figures\n", doc)
    _serve_ray.write_serve_ray("ray figures\n", doc)
    _triton.write_triton("triton again\n", doc)
    assert doc.read_text() == (
        "# Benchmarks\n\nother figures\n\n"
        f"{_serve.BEGIN}\nserve figures\n{_serve.END}\n\n"
        f"{_triton.BEGIN}\ntriton again\n{_triton.END}\n\n"
        f"{_serve_ray.BEGIN}\nray figures\n{_serve_ray.END}\n"
    )
    real = (Path(__file__).resolve().parents[1] / "BENCHMARKS.md").read_text(encoding="utf-8")
    copy = tmp_path / "BENCHMARKS.md"
    copy.write_text(real, encoding="utf-8")
    for mod, write in (
        (_serve, _serve.write_serve),
        (_triton, _triton.write_triton),
        (_serve_ray, _serve_ray.write_serve_ray),
    ):
        assert mod.BEGIN in real, mod.__name__
        inner = real.split(mod.BEGIN + "\n", 1)[1].split(mod.END, 1)[0]
        write(inner, copy)
        assert copy.read_text(encoding="utf-8") == real, mod.__name__


def test_render_triton_is_the_section_without_its_markers(tmp_path: Path) -> None:
    from edgeseq.bench._triton import BEGIN, END, render_triton, write_triton

    config = dict(cell="lstm", input_size=40, hidden_size=128, layers=2, frames=1, seconds=1.0,
                  warmup=0.5, client_processes=1, threads=1, quick=True)  # fmt: skip
    setting = {"fps": 1234.0, "p50_ms": 1.5, "p99_ms": 3.25, "avg_batch": 2.0}
    results = {
        "config": config,
        "machine": {"cpu": "a cpu", "cores": 2},
        "contenders": {
            "Triton python backend (gRPC)": {"available": True, "settings": {"1": setting}},
            "edgeseq serve (WebSocket)": {"available": False, "reason": "no serve extra"},
        },
    }
    markdown = render_triton(results)
    assert BEGIN not in markdown and END not in markdown and markdown.endswith("\n")
    assert markdown.startswith("## Serving: Triton's python backend beside edgeseq\n")
    assert "| Triton python backend (gRPC) | 1 " in markdown and "1,234" in markdown
    assert "- edgeseq serve (WebSocket): not available (no serve extra)" in markdown
    write_triton(markdown, tmp_path / "B.md")
    assert (tmp_path / "B.md").read_text() == f"{BEGIN}\n{markdown}{END}\n"
