"""Smoke test of the benchmark suite: it runs on a tiny setting and reports every section.

Benchmarks are not tests: nothing here checks a figure, only that the suite runs, writes
its JSON and markdown, and keeps hand-written notes.
"""

from __future__ import annotations

import json
import os
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
    for name in ("pool", "loop_predictors", "ort_batched", "torch_batched"):
        rec = cell["streams"][name]
        assert "fps" in rec or rec["available"] is False, name
    assert set(cell["chunks"]) == {"1", "8", "32", "128"}
    assert cell["modes"]["native"]["size_bytes"] > 0
    for variant in ("unrolled", "int8", "fp16", "ort"):
        rec = cell["modes"][variant]
        assert (rec["available"] is False and rec["reason"]) or "size_bytes" in rec, variant
    runtime = cell["footprint"]["runtime"]
    assert runtime["wall_s"] > 0 and runtime["onnx_imported"] in (True, False)
    assert cell["footprint"]["torch"]["wall_s"] > 0
    assert cell["export"]["native"]["median_s"] > 0


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
