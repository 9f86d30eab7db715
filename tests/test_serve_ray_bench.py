"""Smoke test of ``edgeseq bench --serve-ray``: on the quick setting it runs the single server
and a real local Ray cluster (1 replica, re-sized in place to 2) under client processes,
reports every row, the CPU split and the capacity arithmetic, cleans the cluster up, and
writes only its own section. Benchmarks are not tests: no figure is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _ray import need_ray
from click.testing import CliRunner

from edgeseq.bench._serve_ray import BEGIN, END
from edgeseq.cli import main

need_ray()


@pytest.mark.timeout(600)
def test_bench_serve_ray_quick_runs_and_writes_its_section(tmp_path: Path) -> None:
    out, js = tmp_path / "BENCH.md", tmp_path / "ray.json"
    out.write_text(f"# other figures\n\n{BEGIN}\nOLD-SECTION\n{END}\n\nnotes kept\n")
    result = CliRunner().invoke(
        main, ["bench", "--serve-ray", "--quick", "--out", str(out), "--json", str(js)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    rows = [(s["contender"], s["replicas"], s["frames_per_message"]) for s in data["settings"]]
    assert rows == [
        ("edgeseq serve", None, 1),
        ("edgeseq serve --ray", 1, 1),
        ("edgeseq serve --ray", 2, 1),
    ]
    for s in data["settings"]:
        assert s["messages"] > 0 and s["fps"] > 0 and s["p99_ms"] >= s["p50_ms"] > 0
        assert s["cpu_s_per_kframe"] > 0
    for s in data["settings"][1:]:
        assert 0 < s["replica_cpu_s_per_kframe"] < s["cpu_s_per_kframe"]
    assert data["serve_exit"] == 0 and data["ray_exit"] == 0
    cap = data["capacity"]
    assert cap["replicas"] >= 1 and cap["cores"] > cap["replica_cores"] > 0
    assert data["bytes_per_stream"]["snapshot"] > data["bytes_per_stream"]["state"] > 0
    text = out.read_text()
    assert text.startswith("# other figures") and text.rstrip().endswith("notes kept")
    assert "OLD-SECTION" not in text and text.count(BEGIN) == 1 and "Capacity arithmetic" in text
    assert "Quick setting" in text
