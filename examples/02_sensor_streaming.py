"""Sensor streaming: a running activity prediction after every smartwatch frame.

Data: BasicMotions, from the UEA multivariate time series classification archive as
shipped in the PyPI package ``sktime`` (``sktime/datasets/data/BasicMotions``,
BSD-3-Clause). 80 recordings of 10 s at 10 Hz, six channels (3-D accelerometer and
3-D gyroscope), four activities: badminton, running, standing, walking. The archive's
own split is kept: 40 recordings train, 40 are held out. Loaded with
:func:`edgeseq.train.data.load_basic_motions`.

A many-to-one GRU is trained on the class at the last valid frame. Each training
recording is also shown as random prefixes (10 to 100 frames), so the running
prediction is trained to be right early, not only at frame 100. The held-out
recordings are streamed frame by frame through the ONNX runtime, which applies the
per-channel normalisation written into the model file; the table reports the accuracy
at the end of each recording, the accuracy after a given number of frames, and how
early the prediction settles (the frame after which its argmax never changes).

Run: ``python examples/02_sensor_streaming.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import softmax, start


def train_motion_model(run, X, y, names, *, hidden: int, epochs: int, prefixes: int):
    """A many-to-one GRU on recordings ``X`` (N, T, 6); returns (model, Preprocessing, result).

    Shared with ``03_many_sensors.py``. ``prefixes`` random prefix copies per recording.
    """
    from edgeseq.contract import Preprocessing
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import SequenceData, TrainConfig, fit

    mean, std = X.mean(axis=(0, 1)), X.std(axis=(0, 1)) + 1e-6  # per channel
    rng = np.random.default_rng(run.seed)
    n, t = X.shape[:2]
    lengths = np.concatenate([np.full(n, t), rng.integers(10, t + 1, size=n * prefixes)])
    reps = np.tile(np.arange(n), prefixes + 1)
    data = SequenceData(((X - mean) / std)[reps].astype(np.float32), y[reps], lengths)
    cfg = SeqConfig(
        cell="gru",
        input_size=X.shape[2],
        hidden_size=hidden,
        output_size=len(names),
        topology="many_to_one",
        task="classify",
        extra={"labels": list(names)},
    )
    model = SeqModel(cfg)
    config = TrainConfig(
        epochs=epochs,
        batch_size=32,
        lr=3e-3,
        val_fraction=0.0,
        seed=run.seed,
        progress=not run.quick,
    )
    result = fit(model, data, config)
    prep = Preprocessing(mean=mean.tolist(), std=std.tolist())
    return model, prep, result


def settle_frame(probs: np.ndarray) -> int:
    """First frame index from which the argmax never changes again."""
    top = probs.argmax(axis=-1)
    changed = np.flatnonzero(top != top[-1])
    return int(changed[-1] + 1) if changed.size else 0


def main(argv: list[str] | None = None) -> dict:
    run = start("02_sensor_streaming", __doc__, argv)
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.data import load_basic_motions

    X, y, names, is_train = load_basic_motions()
    model, prep, result = train_motion_model(
        run,
        X[is_train],
        y[is_train],
        names,
        hidden=run.pick(32, 16),
        epochs=run.pick(40, 3),
        prefixes=run.pick(4, 1),
    )
    onnx_path = run.path("motions.onnx")
    export_model(model, onnx_path, preprocessing=prep)
    predictor = StreamingPredictor(onnx_path, threads=1)

    X_test, y_test = X[~is_train], y[~is_train]
    model.eval()
    norm = ((X_test[0] - np.float32(prep.mean)) / np.float32(prep.std)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(norm)[None])[0][0].numpy()
    run.parity("running logits", predictor, X_test[0], reference=ref)

    probs = []  # (N, T, classes): the running prediction, streamed one frame at a time
    for rec in X_test:
        predictor.reset()
        probs.append(softmax(np.stack([predictor.step(frame) for frame in rec])))
    probs = np.stack(probs)
    top = probs.argmax(-1)  # (N, T)
    final_ok = top[:, -1] == y_test
    settle = np.array([settle_frame(p) for p in probs])
    t = X.shape[1]
    acc_at = {k: float(np.mean(top[:, k - 1] == y_test)) for k in (10, 25, 50, 75, t)}
    per_class = [float(np.mean(final_ok[y_test == c])) for c in range(len(names))]
    run.table(
        "Held-out recordings, streamed frame by frame (10 Hz)",
        ["measure", "value"],
        [
            ["recordings (train / held out)", f"{int(is_train.sum())} / {len(y_test)}"],
            ["accuracy at the end (frame 100)", float(final_ok.mean())],
            *[[f"accuracy after {k} frames ({k / 10:g} s)", v] for k, v in acc_at.items()][:-1],
            ["mean settle frame (argmax fixed from then on)", float(settle.mean())],
            ["median settle frame", float(np.median(settle))],
            ["settled by frame 20 (2 s)", float(np.mean(settle <= 20))],
            ["train seconds", round(result.seconds, 1)],
        ],
    )
    run.table(
        "Accuracy at the end, per activity", ["activity", "accuracy"], list(zip(names, per_class))
    )
    run.record("final_accuracy", float(final_ok.mean()))
    run.record("mean_settle_frame", float(settle.mean()))
    run.record("accuracy_by_frame", (np.mean(top == y_test[:, None], axis=0)).round(4))

    plt = run.pyplot()
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    i = int(np.flatnonzero(y_test == names.index("walking"))[0])
    seconds = np.arange(1, t + 1) / 10
    a.plot(seconds, X_test[i], lw=0.8)
    a.set_title(f"held-out recording {i} ({names[y_test[i]]}): 3 accelerometer + 3 gyroscope")
    for k, name in enumerate(names):
        b.plot(seconds, probs[i, :, k], lw=1.5, label=name)
    b.axvline(settle[i] / 10 + 0.1, color="gray", ls=":", label="settled")
    b.set_ylabel("P(activity)")
    b.set_title("running class probabilities, one ONNX step per frame")
    b.legend(loc="center right", fontsize=8)
    c.plot(seconds, np.mean(top == y_test[:, None], axis=0), "k", lw=1.5)
    c.set_ylim(0, 1.02)
    c.set_ylabel("accuracy")
    c.set_xlabel("seconds of the recording seen")
    c.set_title(f"accuracy of the running prediction over all {len(y_test)} held-out recordings")
    run.save_plot(fig, "02_sensor_streaming.png")
    return run.finish()


if __name__ == "__main__":
    main()
