"""Soak (issue 10): 10^5 predictor steps, pool steps over every batch size 1..256, submits,
snapshots and long chunks on one process; resident memory stays within a stated bound.

The bound, after a warm-up that runs each kind of call once at its largest size: RSS grows
by at most ``BOUND_MB``. Before issue 10 the pool kept one set of state buffers per batch
size (about 70 MB here for a hidden-64 LSTM over sizes 1..256, quadratic in max_streams)
and long chunks kept onnxruntime's arena at their high-water mark.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from edgeseq.runtime import StreamingPredictor, StreamPool

STEPS = 100_000
STREAMS = 256
BOUND_MB = 25.0

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/statm").exists(), reason="RSS is read from /proc (Linux only)"
)


def _rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    cfg = SeqConfig(cell="lstm", input_size=4, hidden_size=64, layers=2, output_size=2)
    path = tmp_path_factory.mktemp("soak") / "lstm64.onnx"
    export_model(SeqModel(cfg), path)
    return path


def test_soak_memory_stays_bounded(model: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((4096, 4)).astype(np.float32)
    long = rng.standard_normal((50_000, 4)).astype(np.float32)
    pred = StreamingPredictor(model, threads=1)
    with StreamPool(model, max_streams=STREAMS, threads=1, max_wait_ms=0) as pool:
        ids = [pool.open() for _ in range(STREAMS)]
        # warm-up: every kind of call once, at its largest size
        pool.step({i: frames[i] for i in ids})
        pool.step({ids[0]: long[:5000], ids[1]: frames[0]})
        pool.submit(ids[0], frames[:3]).result(timeout=30)
        pred.step(long)
        for x in frames[:1000]:
            pred.step(x)
        pool.restore(ids[0], pool.snapshot(ids[0]).to_bytes())
        before = _rss_mb()
        done = 0
        for size in range(1, STREAMS + 1):  # every batch size, rows chosen at random
            chosen = rng.choice(STREAMS, size, replace=False)
            pool.step({ids[j]: frames[(j + size) % len(frames)] for j in chosen})
            for k in range(STEPS // STREAMS):
                pred.step(frames[(done + k) % len(frames)])
            done += STEPS // STREAMS
            if size % 32 == 0:  # the rarer calls, now and then
                pool.submit(ids[size - 1], frames[:7]).result(timeout=30)
                pool.restore(ids[size - 1], pool.snapshot(ids[size - 1]).to_bytes())
                pred.step(long)
                pool.step({ids[0]: long[: 4000 + size], ids[size - 1]: frames[1]})
        while done < STEPS:
            pred.step(frames[done % len(frames)])
            done += 1
        grown = _rss_mb() - before
    assert done == STEPS and pred.frames_seen == STEPS + 1000 + 9 * len(long)
    assert grown <= BOUND_MB, f"RSS grew by {grown:.1f} MB over the soak (bound {BOUND_MB} MB)"
