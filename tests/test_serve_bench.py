"""Smoke test of ``edgeseq bench --serve``: on the quick setting it runs a real server and
client processes, reports every setting and the targets, and writes only its own section.
Benchmarks are not tests: no figure is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeseq.bench._serve import BEGIN, END
from edgeseq.cli import main


@pytest.mark.timeout(300)
def test_bench_serve_quick_runs_and_writes_its_section(tmp_path: Path) -> None:
    out, js = tmp_path / "BENCH.md", tmp_path / "serve.json"
    out.write_text(f"# other figures\n\n{BEGIN}\nold\n{END}\n\nnotes kept\n")
    result = CliRunner().invoke(
        main, ["bench", "--serve", "--quick", "--out", str(out), "--json", str(js)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    assert [(s["connections"], s["frames_per_message"]) for s in data["settings"]] == [
        (1, 1), (1, 3), (4, 1), (4, 3),
    ]  # fmt: skip
    for s in [*data["settings"], data["rate"]]:
        assert s["messages"] > 0 and s["fps"] > 0 and s["p99_ms"] >= s["p50_ms"] > 0
    assert all(s["pool_fps"] > 0 for s in data["settings"])
    assert data["server_exit"] == 0
    assert [t["met"] for t in data["targets"]] == [None, None]  # quick: nothing measured
    text = out.read_text()
    assert text.startswith("# other figures") and text.rstrip().endswith("notes kept")
    assert "old" not in text and text.count(BEGIN) == 1 and "| 4 | 3 |" in text
