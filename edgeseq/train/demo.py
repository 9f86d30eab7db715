"""``edgeseq demo``: the whole job on an embedded data set, in under a minute.

Trains a small LSTM forecaster on IBM's daily closes 2000-2013 (shipped inside the
package, public domain; see ``edgeseq/train/datasets/README.md``), exports it to ONNX,
checks parity, streams the held-out period one day at a time through
:class:`~edgeseq.runtime.StreamingPredictor`, and reports parity, latency, size and
forecast error against the naive last-value forecast.

The model reads daily log returns (in percent) and predicts the next one; a price
forecast is ``close_t * exp(r_hat / 100)``. Daily prices are close to a random walk,
so the honest expectation is an error near the naive forecast's, not far below it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DemoReport", "run_demo"]


@dataclass
class DemoReport:
    """What the demo measured. Errors are in dollars on the held-out days."""

    out_dir: Path
    train_days: int
    test_days: int
    epochs_run: int
    train_seconds: float
    parity_max_abs: float  # streamed one frame at a time vs PyTorch whole sequence
    chunked_parity_max_abs: float  # streamed in chunks of 7 vs the same
    predictor_us_per_frame: float
    torch_us_per_frame: float
    model_bytes: int
    mae: float
    naive_mae: float
    direction_accuracy: float  # share of days whose up/down move was predicted

    def table(self) -> str:
        from edgeseq.table import format_table

        rows = [
            (
                "data",
                f"IBM daily close, {self.train_days} days to train, {self.test_days} held out",
            ),
            ("training", f"{self.epochs_run} epochs, {self.train_seconds:.1f} s"),
            ("parity, frame by frame (max abs)", f"{self.parity_max_abs:.2e}"),
            ("parity, chunks of 7 (max abs)", f"{self.chunked_parity_max_abs:.2e}"),
            ("latency per frame, StreamingPredictor", f"{self.predictor_us_per_frame:.1f} us"),
            ("latency per frame, PyTorch eager", f"{self.torch_us_per_frame:.1f} us"),
            ("model size", f"{self.model_bytes / 1024:.1f} KiB"),
            ("forecast MAE (held out)", f"${self.mae:.3f}"),
            ("naive last-value MAE", f"${self.naive_mae:.3f}"),
            ("MAE / naive MAE", f"{self.mae / self.naive_mae:.3f}"),
            ("direction accuracy", f"{100 * self.direction_accuracy:.1f}%"),
        ]
        return format_table(["measure", "value"], rows)


def run_demo(
    out_dir: str | Path = "edgeseq-demo",
    *,
    cell: str = "lstm",
    hidden_size: int = 32,
    epochs: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> DemoReport:
    """Train, export, verify and stream; write ``model.pt`` and ``model.onnx`` to ``out_dir``."""
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.checkpoint import save_checkpoint
    from edgeseq.train.data import load_demo_series
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import TrainConfig, fit_stream

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, closes = load_demo_series()
    closes = closes.astype(np.float64)
    returns = (100 * np.diff(np.log(closes))).astype(np.float32)  # (N-1,) percent
    x_all, y_all = returns[:-1], returns[1:]  # frame t -> the return of day t+1
    n = len(x_all)
    n_fit = int(n * 0.85)  # train + validation; the last 15% is held out
    mean, std = float(x_all[:n_fit].mean()), float(x_all[:n_fit].std())

    torch.manual_seed(seed)
    model = SeqModel(
        SeqConfig(
            cell=cell,
            input_size=1,
            hidden_size=hidden_size,  # type: ignore[arg-type]
            output_size=1,
            task="forecast",
        )
    )
    norm_x = (x_all - mean) / std
    norm_y = (y_all - mean) / std
    t0 = time.perf_counter()
    result = fit_stream(
        model, norm_x[:n_fit, None], norm_y[:n_fit, None],
        TrainConfig(epochs=epochs, batch_size=1, lr=3e-3, tbptt=64, val_fraction=0.15,
                    patience=3, seed=seed, progress=progress),
    )  # fmt: skip
    train_seconds = time.perf_counter() - t0
    prep = Preprocessing(mean=[mean], std=[std], out_mean=[mean], out_std=[std])
    save_checkpoint(
        out / "model.pt",
        model,
        extra={"preprocessing": prep.__dict__, "data": "IBM daily close (embedded)"},
    )
    onnx_path = out / "model.onnx"
    export_model(model, onnx_path, preprocessing=prep)

    # PyTorch over the whole series is the reference for every streamed output
    model.eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(norm_x)[None, :, None])[0][0, :, 0].numpy() * std + mean
    predictor = StreamingPredictor(onnx_path, threads=1)
    streamed = np.array([predictor.step(np.float32([v]))[0] for v in x_all])  # (n,)
    predictor.reset()
    chunked = np.concatenate([predictor.step(x_all[i : i + 7, None])[:, 0] for i in range(0, n, 7)])

    # held-out forecast: close of day t+1 from everything up to day t
    test = slice(n_fit, n)
    today = closes[1:-1][test]  # close on the day each frame ends
    actual = closes[2:][test]
    forecast = today * np.exp(streamed[test] / 100)
    mae = float(np.mean(np.abs(forecast - actual)))
    naive_mae = float(np.mean(np.abs(today - actual)))
    moved = np.sign(actual - today)
    direction = float(np.mean(np.sign(streamed[test])[moved != 0] == moved[moved != 0]))

    return DemoReport(
        out_dir=out,
        train_days=n_fit,
        test_days=n - n_fit,
        epochs_run=len(result.history),
        train_seconds=train_seconds,
        parity_max_abs=float(np.max(np.abs(streamed - ref))),
        chunked_parity_max_abs=float(np.max(np.abs(chunked - ref))),
        predictor_us_per_frame=_time_predictor(predictor, x_all),
        torch_us_per_frame=_time_torch(model, norm_x),
        model_bytes=onnx_path.stat().st_size,
        mae=mae,
        naive_mae=naive_mae,
        direction_accuracy=direction,
    )


def _time_predictor(predictor, frames: np.ndarray, n: int = 1000) -> float:
    """Median microseconds per one-frame step() call."""
    predictor.reset()
    times = []
    for v in frames[:n]:
        f = np.float32([v])
        t = time.perf_counter()
        predictor.step(f)
        times.append(time.perf_counter() - t)
    return 1e6 * float(np.median(times))


def _time_torch(model, frames: np.ndarray, n: int = 1000) -> float:
    """Median microseconds per one-frame eager PyTorch call, state carried, one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state = None
        times = []
        with torch.inference_mode():
            for v in frames[:n]:
                x = torch.tensor([[[v]]], dtype=torch.float32)
                t = time.perf_counter()
                _, state = model(x, state)
                times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return 1e6 * float(np.median(times))
