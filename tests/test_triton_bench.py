"""`edgeseq bench --triton` runs end to end on a tiny setting and writes only its section."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgeseq.bench._triton import (
    BEGIN,
    END,
    TritonBenchConfig,
    render_triton,
    run_triton_bench,
    write_triton,
)
from edgeseq.exporters.triton.server import LocalTriton, TritonUnavailable

pytestmark = pytest.mark.timeout(600)


def test_triton_bench_runs_and_replaces_only_its_section(tmp_path: Path) -> None:
    try:
        LocalTriton.find()
    except TritonUnavailable as exc:
        import os

        if os.environ.get("EDGESEQ_REQUIRE_TRITON"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    config = dataclasses.replace(
        TritonBenchConfig.quick_setting(), sequences=(2,), seconds=0.5, warmup=0.2,
        client_processes=1,
    )  # fmt: skip
    results = run_triton_bench(config)
    triton = results["contenders"]["Triton python backend (gRPC)"]
    assert triton["available"], triton
    setting = triton["settings"]["2"]
    assert setting["requests"] > 0 and setting["fps"] > 0
    assert setting["p99_ms"] >= setting["p50_ms"] > 0 and setting["avg_batch"] >= 1
    assert results["contenders"]["StreamPool.submit in process"]["settings"]["2"]["fps"] > 0
    served = results["contenders"]["edgeseq serve (WebSocket)"]
    assert served["available"], served  # the dev install has the serve extra
    assert served["settings"]["2"]["requests"] > 0
    assert served["settings"]["2"]["p99_ms"] >= served["settings"]["2"]["p50_ms"] > 0
    markdown = render_triton(results)
    assert "QUICK SMOKE RUN" in markdown and "edgeseq serve" in markdown
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nother figures\n")
    write_triton(markdown, doc)
    write_triton(markdown.replace("QUICK", "QUICKER"), doc)  # replaced, not appended
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nother figures\n")
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and "QUICKER" in text
