"""Stock forecasting: stream one daily close at a time, predict the next one.

Data: daily split- and dividend-adjusted closes of AAPL, IBM and MSFT, 2000-03-01 to
2013-03-01 (3,270 trading days each), from ``bokeh_sampledata/_data/stocks.csv.gz`` in
the PyPI package ``bokeh-sampledata`` (Quandl WIKI Prices; public domain per the
package's ``licenses/datasets.json``). Loaded with :func:`edgeseq.train.data.load_stock`.

One LSTM learns all three stocks (three streams, truncated BPTT). It reads each day's
log return in percent and predicts the next day's; the device turns that into a price
forecast, ``close_t * exp(r_hat / 100)``. Days are split in time: the first 70% train,
the next 15% pick the epoch, the last 15% are held out and streamed through the ONNX
runtime one price at a time, the state carried across the whole history.

Daily prices are close to a random walk, so the honest benchmark is the naive
forecast "tomorrow = today". The table shows the model's error next to it, plus MASE
(mean absolute scaled error) on log prices: the mean absolute error of the log
forecast divided by the naive forecast's in-sample error over the training days, so
it is free of the price level; the naive forecast's own held-out MASE shows how calm
the held-out period was compared with training.

Run: ``python examples/01_stock_forecast.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import start

SYMBOLS = ("AAPL", "IBM", "MSFT")


class PriceStream:
    """The device loop: one close in, the next close's forecast out (None on day one)."""

    def __init__(self, predictor) -> None:
        self.predictor, self.last = predictor, None

    def step(self, close: float) -> float | None:
        prev, self.last = self.last, close
        if prev is None:
            return None
        r = np.float32([100 * np.log(close / prev)])  # today's log return, percent
        r_next = float(self.predictor.step(r)[0])
        return close * float(np.exp(r_next / 100))


def main(argv: list[str] | None = None) -> dict:
    run = start("01_stock_forecast", __doc__, argv)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.data import load_stock
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import TrainConfig, fit_stream

    symbols = run.pick(SYMBOLS, SYMBOLS[:1])
    days = run.pick(None, 900)  # quick: the last 900 days only
    dates = load_stock(symbols[0], "Adj Close")[0]
    prices = np.stack([load_stock(s, "Adj Close")[1] for s in symbols]).astype(np.float64)
    dates, prices = dates[-days if days else 0 :], prices[:, -days if days else 0 :]
    returns = 100 * np.diff(np.log(prices), axis=1)  # (S, N-1) percent
    x, y = returns[:, :-1], returns[:, 1:]  # frame t -> the return of day t+1
    n = x.shape[1]
    n_train, n_fit = int(0.70 * n), int(0.85 * n)  # train | val (epoch choice) | test
    mean, std = float(x[:, :n_train].mean()), float(x[:, :n_train].std())

    cfg = SeqConfig(
        cell="lstm", input_size=1, hidden_size=run.pick(32, 16), output_size=1, task="forecast"
    )
    model = SeqModel(cfg)
    norm = lambda a: ((a - mean) / std).astype(np.float32)[..., None]  # noqa: E731
    train = TrainConfig(
        epochs=run.pick(40, 2),
        batch_size=len(symbols),
        lr=2e-3,
        tbptt=64,
        val_fraction=(n_fit - n_train) / n_fit,
        patience=8,
        seed=run.seed,
        progress=not run.quick,
    )
    result = fit_stream(model, norm(x[:, :n_fit]), norm(y[:, :n_fit]), train)

    prep = Preprocessing(mean=[mean], std=[std], out_mean=[mean], out_std=[std])
    onnx_path = run.path("stock.onnx")
    export_model(model, onnx_path, preprocessing=prep)
    predictor = StreamingPredictor(onnx_path, threads=1)
    model.eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(norm(x[0]))[None])[0][0].numpy() * std + mean  # (n, 1)
    run.parity("stock returns", predictor, x[0, :, None].astype(np.float32), reference=ref)

    rows, plot_data = [], None
    for s, sym in enumerate(symbols):
        predictor.reset()
        stream = PriceStream(predictor)
        # forecasts[t] is made after seeing close t and targets close t+1
        forecasts = np.array([stream.step(p) for p in prices[s, :-1]][1:], dtype=np.float64)
        actual, today = prices[s, 2:], prices[s, 1:-1]  # aligned with frames 0..n-1
        test = slice(n_fit, n)
        err, naive = forecasts[test] - actual[test], today[test] - actual[test]
        # MASE on log prices: log errors are return errors, scaled by the naive forecast's
        # in-sample MAE (the mean absolute daily log return over the training days)
        log_err = np.log(forecasts[test] / actual[test])
        scale = float(np.mean(np.abs(np.diff(np.log(prices[s, : n_train + 2])))))
        moved = np.sign(actual[test] - today[test])
        up = np.sign(forecasts[test] - today[test])
        mae, naive_mae = float(np.mean(np.abs(err))), float(np.mean(np.abs(naive)))
        rows.append(
            [
                sym,
                n - n_fit,
                mae,
                naive_mae,
                mae / naive_mae,
                float(np.sqrt(np.mean(err**2))),
                float(np.sqrt(np.mean(naive**2))),
                float(np.mean(np.abs(log_err))) / scale,
                float(np.mean(np.abs(np.log(today[test] / actual[test])))) / scale,
                float(np.mean(up[moved != 0] == moved[moved != 0])),
            ]
        )
        if s == 0:
            plot_data = (dates[2:][test], actual[test], forecasts[test], sym)

    run.table(
        "Held-out one-day-ahead forecasts (adjusted close, US dollars)",
        [
            "stock",
            "days",
            "MAE",
            "naive MAE",
            "MAE/naive",
            "RMSE",
            "naive RMSE",
            "MASE",
            "naive MASE",
            "direction acc",
        ],
        rows,
    )
    best = result.best_epoch if result.best_epoch is not None else len(result.history) - 1
    run.table(
        "Training",
        ["measure", "value"],
        [
            ["streams x training days", f"{len(symbols)} x {n_train}"],
            ["epochs run (best)", f"{len(result.history)} ({best + 1})"],
            ["best val MSE (normalised returns)", result.best_val_loss],
            ["train seconds", round(result.seconds, 1)],
            ["ONNX size (KB)", round(onnx_path.stat().st_size / 1024, 1)],
        ],
    )
    run.record("mean_mae_over_naive", float(np.mean([r[4] for r in rows])))
    run.record("mean_mase", float(np.mean([r[7] for r in rows])))
    _plot(run, *plot_data)  # type: ignore[misc]
    return run.finish()


def _plot(run, dates, actual, forecast, sym) -> None:
    plt = run.pyplot()
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5.5))
    a.plot(dates, actual, lw=1, color="k", label="actual close")
    a.plot(dates, forecast, lw=1, color="C1", alpha=0.8, label="LSTM forecast (ONNX stream)")
    a.set_title(f"{sym}: next-day forecast on the held-out period")
    a.set_ylabel("US$ (adjusted)")
    a.legend(loc="upper left")
    k = min(60, len(dates))
    b.plot(dates[-k:], actual[-k:], "k.-", lw=1, label="actual")
    b.plot(dates[-k:], forecast[-k:], ".-", color="C1", lw=1, label="forecast")
    b.plot(
        dates[-k:],
        np.r_[np.nan, actual[-k:-1]],
        ".--",
        color="C2",
        lw=0.8,
        label="naive (yesterday)",
    )
    b.set_title(f"last {k} held-out days")
    b.set_ylabel("US$")
    b.legend(loc="upper left")
    fig.autofmt_xdate()
    run.save_plot(fig, "01_stock_forecast.png")


if __name__ == "__main__":
    main()
