"""Many sensors at once: one model serving dozens of simulated devices through StreamPool.

Data: BasicMotions (UEA archive, shipped in the PyPI package ``sktime``,
BSD-3-Clause): 80 smartwatch recordings of 100 frames, six channels, four activities.
The model is the running activity classifier of ``02_sensor_streaming.py``, trained
the same way on the archive's 40 training recordings.

Every recording becomes a device (80 of them). On each tick of the simulation every
device sends whatever its own pace produced since the last tick: a Poisson number of
frames (often 0) around a device-specific rate of 0.5 to 4 frames per tick, so the
devices drift out of step and finish at different times. One
``StreamPool.step({id: frames})`` call per tick serves them all; a finished device
closes its stream. The replay is repeated a few times to get a stable rate.

Checks: every device's outputs equal those of a solo
:class:`~edgeseq.runtime.StreamingPredictor` fed the whole recording (max abs
difference, limit 1e-5), and the pool's final predictions score the held-out
recordings. Throughput is reported as frames per second, for the pool and for the
naive alternative (one predictor per device, called device by device), and the plot
shows both against the number of devices.

Run: ``python examples/03_many_sensors.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import start


def schedule(n_devices: int, frames: int, rng: np.random.Generator) -> list[list[int]]:
    """Per tick, the chunk size each device sends (0: silent); every device sends ``frames``."""
    rates = rng.uniform(0.5, 4.0, size=n_devices)  # mean frames per tick, per device
    left = np.full(n_devices, frames)
    ticks = []
    while left.any():
        sizes = np.minimum(rng.poisson(rates), left)
        left -= sizes
        ticks.append(sizes.tolist())
    return ticks


def replay_pool(pool, recordings: np.ndarray, ticks: list[list[int]]):
    """Replay through the pool; return (per-device outputs, seconds in step, calls)."""
    n = len(recordings)
    ids = [pool.open() for _ in range(n)]
    pos, outs = [0] * n, [[] for _ in range(n)]
    seconds, calls = 0.0, 0
    for sizes in ticks:
        batch = {ids[d]: recordings[d, pos[d] : pos[d] + k] for d, k in enumerate(sizes) if k}
        if not batch:
            continue
        t0 = time.perf_counter()
        result = pool.step(batch)
        seconds += time.perf_counter() - t0
        calls += 1
        for d, k in enumerate(sizes):
            if k:
                outs[d].append(result[ids[d]])
                pos[d] += k
                if pos[d] == recordings.shape[1]:
                    pool.close(ids[d])  # the device is done: free its row
    return [np.concatenate(o) for o in outs], seconds, calls


def replay_solo(predictors, recordings: np.ndarray, ticks: list[list[int]]) -> float:
    """The same schedule through one StreamingPredictor per device; seconds in step."""
    for p in predictors:
        p.reset()
    pos, seconds = [0] * len(recordings), 0.0
    for sizes in ticks:
        t0 = time.perf_counter()
        for d, k in enumerate(sizes):
            if k:
                predictors[d].step(recordings[d, pos[d] : pos[d] + k])
                pos[d] += k
        seconds += time.perf_counter() - t0
    return seconds


def main(argv: list[str] | None = None) -> dict:
    run = start("03_many_sensors", __doc__, argv)
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor, StreamPool
    from edgeseq.train.data import load_basic_motions

    sensor = importlib.import_module("02_sensor_streaming")
    X, y, names, is_train = load_basic_motions()
    model, prep, _ = sensor.train_motion_model(
        run,
        X[is_train],
        y[is_train],
        names,
        hidden=run.pick(32, 16),
        epochs=run.pick(40, 2),
        prefixes=run.pick(4, 1),
    )
    onnx_path = run.path("motions.onnx")
    export_model(model, onnx_path, preprocessing=prep)
    solo = StreamingPredictor(onnx_path, threads=1)
    run.parity("solo predictor", solo, X[0])

    rng = np.random.default_rng(run.seed)
    n_dev, frames = len(X), X.shape[1]
    repeats = run.pick(5, 1)
    pool = StreamPool(onnx_path, max_streams=n_dev, threads=1)
    ticks = schedule(n_dev, frames, rng)
    outs, _, _ = replay_pool(pool, X, ticks)  # the replay that is checked

    whole = []
    for rec in X:
        solo.reset()
        whole.append(solo.step(rec))
    diff = max(float(np.max(np.abs(o - w))) for o, w in zip(outs, whole))
    print(f"parity [pool vs solo]: {n_dev} devices, max |diff| {diff:.1e} (limit 1e-05)")
    run.results.setdefault("parity", {})["pool vs solo"] = {"devices": n_dev, "max_abs": diff}
    assert diff <= 1e-5, f"pool outputs differ from a solo predictor's by {diff}"
    final = np.array([o[-1].argmax() for o in outs])
    held_acc = float(np.mean(final[~is_train] == y[~is_train]))

    sizes = sorted({1, 4, 16, n_dev} | set(run.pick([2, 8, 32, 48, 64], [])))
    scaling = []
    for n in sizes:
        recs = X[:n]
        pool_s = solo_s = 0.0
        pool_calls = 0
        predictors = [StreamingPredictor(onnx_path, threads=1) for _ in range(n)]
        for _ in range(repeats):
            plan = schedule(n, frames, rng)
            _, s, c = replay_pool(pool, recs, plan)
            pool_s, pool_calls = pool_s + s, pool_calls + c
            solo_s += replay_solo(predictors, recs, plan)
        total = n * frames * repeats
        scaling.append(
            [
                n,
                total,
                pool_calls,
                round(total / pool_s),
                round(total / solo_s),
                solo_s / pool_s,
                1e3 * pool_s / pool_calls,
            ]
        )
    run.table(
        "Throughput: replaying every device's recording at its own pace",
        [
            "devices",
            "frames",
            "pool calls",
            "pool frames/s",
            "solo frames/s",
            "speed-up",
            "ms per pool call",
        ],
        scaling,
    )
    top = scaling[-1]
    run.table(
        f"{n_dev} devices through one StreamPool",
        ["measure", "value"],
        [
            ["devices (recordings)", n_dev],
            ["ticks in one replay", len(ticks)],
            ["chunk sizes seen", f"{min(min(t) for t in ticks)} to {max(max(t) for t in ticks)}"],
            ["pool vs solo predictor, max |diff|", diff],
            ["held-out accuracy from the pool's final outputs", held_acc],
            ["frames/s, pool", top[3]],
            ["frames/s, one predictor per device", top[4]],
        ],
    )
    run.record("pool_frames_per_s", top[3])
    run.record("solo_frames_per_s", top[4])
    run.record("heldout_accuracy", held_acc)

    plt = run.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ns = [r[0] for r in scaling]
    ax.plot(ns, [r[3] for r in scaling], "o-", label="StreamPool: one batched call per tick")
    ax.plot(ns, [r[4] for r in scaling], "s-", label="one StreamingPredictor per device")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_yscale("log")
    ax.set_xlabel("concurrent devices")
    ax.set_ylabel("frames per second (1 thread)")
    ax.set_title("BasicMotions replays at uneven paces (0.5-4 frames per tick on average)")
    ax.legend()
    run.save_plot(fig, "03_many_sensors.png")
    return run.finish()


if __name__ == "__main__":
    main()
