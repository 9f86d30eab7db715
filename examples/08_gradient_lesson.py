"""The gradient lesson: how much gradient reaches early time steps, RNN vs LSTM vs GRU.

Data: BasicMotions (UEA archive, shipped in the PyPI package ``sktime``,
BSD-3-Clause): 100-frame smartwatch recordings, six channels, four activities; the
archive's 40 training recordings train, its 40 test recordings score. Loaded with
:func:`edgeseq.train.data.load_basic_motions`.

A many-to-one classifier reads all 100 frames and is scored at the last one. For the
loss L at frame 100, the norm of dL/dh_t (the gradient reaching the hidden state of
step t) shows how far back a training signal travels: through a plain tanh RNN it
shrinks by orders of magnitude over the sequence (vanishing gradients), through the
gated cells far less. It is measured at initialisation and after training. Each cell
is trained twice, with gradient clipping (max global norm 1) and without, and the
per-step gradient norms (before clipping) are kept: clipping bounds the size of an
update when a norm spikes (exploding gradients); it does nothing for vanishing ones.
Every trained model is exported and streamed through the ONNX runtime.

Run: ``python examples/08_gradient_lesson.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import start

CELLS = ("rnn", "lstm", "gru")
COLORS = {"rnn": "C3", "lstm": "C0", "gru": "C2"}
LABELS = {"rnn": "plain RNN", "lstm": "LSTM", "gru": "GRU"}


def grad_through_time(model, x, y) -> np.ndarray:
    """Mean over recordings of ||dL/dh_t||, t = 1..T, for the last-frame loss L.

    Computed in float64 on a copy: in float32 the plain RNN's early gradients underflow
    to exactly zero at initialisation.
    """
    import copy

    import torch.nn.functional as F

    model = copy.deepcopy(model).double().eval()
    x = x.double()
    state, hs = tuple(s.double() for s in model.init_state(x.shape[0])), []
    for t in range(x.shape[1]):
        _, state = model(x[:, t : t + 1], state)
        state[0].retain_grad()  # h_t: (layers, batch, hidden)
        hs.append(state[0])
    # the head applied to h_T is the model's last output; through h_T every h_t is reached
    loss = F.cross_entropy(model.head(hs[-1][-1]), y, reduction="sum")
    loss.backward()
    return np.array([h.grad[-1].norm(dim=-1).mean().item() for h in hs])  # (T,)


def main(argv: list[str] | None = None) -> dict:
    run = start("08_gradient_lesson", __doc__, argv)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.data import load_basic_motions
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import SequenceData, TrainConfig, fit

    X, y, _, is_train = load_basic_motions()
    mean, std = X[is_train].mean(axis=(0, 1)), X[is_train].std(axis=(0, 1))
    Xn = ((X - mean) / std).astype(np.float32)
    x_tr, y_tr = torch.from_numpy(Xn[is_train]), torch.from_numpy(y[is_train])
    prep = Preprocessing(mean=mean.tolist(), std=std.tolist())

    curves, norms, rows = {}, {}, []
    for cell in CELLS:
        for clip in (1.0, None):
            torch.manual_seed(run.seed)  # the same initial weights with and without clipping
            cfg = SeqConfig(
                cell=cell,
                input_size=6,
                hidden_size=run.pick(32, 8),
                output_size=4,
                topology="many_to_one",
                task="classify",
            )
            model = SeqModel(cfg)
            if clip is not None:
                curves[cell, "init"] = grad_through_time(model, x_tr, y_tr)
            train = TrainConfig(
                epochs=run.pick(30, 2),
                batch_size=8,
                lr=5e-3,
                clip_norm=clip,
                val_fraction=0.0,
                seed=run.seed,
                progress=False,
            )
            result = fit(model, SequenceData(Xn[is_train], y[is_train]), train)
            norms[cell, clip] = np.array(result.grad_norms)
            after = curves[cell, clip] = grad_through_time(model, x_tr, y_tr)

            tag = f"{cell}-{'clip' if clip else 'noclip'}"
            path = run.path(f"{tag}.onnx")
            export_model(model, path, preprocessing=prep)
            predictor = StreamingPredictor(path, threads=1)
            with torch.inference_mode():
                ref = model(torch.from_numpy(Xn[~is_train][0])[None])[0][0].numpy()
            run.parity(tag, predictor, X[~is_train][0], reference=ref)
            final = []
            for rec in X[~is_train]:
                predictor.reset()
                final.append(int(np.argmax(predictor.step(rec)[-1])))
            acc = float(np.mean(np.array(final) == y[~is_train]))
            init = curves[cell, "init"]
            rows.append(
                [
                    cell,
                    "1.0" if clip else "off",
                    init[0] / init[-1],
                    after[0] / after[-1],
                    float(np.median(norms[cell, clip])),
                    float(norms[cell, clip].max()),
                    float(np.mean(norms[cell, clip] > 1.0)),
                    acc,
                ]
            )
    run.table(
        "Gradient reaching step 1 relative to step 100, and training with / without clipping",
        [
            "cell",
            "clip",
            "|dL/dh_1| / |dL/dh_100| at init",
            "same after training",
            "median grad norm",
            "max grad norm",
            "steps over 1.0",
            "test accuracy",
        ],
        rows,
    )
    run.record(
        "ratio_at_init", {c: float(curves[c, "init"][0] / curves[c, "init"][-1]) for c in CELLS}
    )
    run.record("grad_through_time_at_init", {c: curves[c, "init"] for c in CELLS})

    plt = run.pyplot()
    fig = plt.figure(figsize=(10, 4.6))
    grid = fig.add_gridspec(3, 2, width_ratios=(1.3, 1))
    a = fig.add_subplot(grid[:, 0])
    t = np.arange(1, X.shape[1] + 1)
    for k, cell in enumerate(CELLS):
        name, color = LABELS[cell], COLORS[cell]
        a.semilogy(t, curves[cell, "init"], "--", color=color, lw=1, label=f"{name}, at init")
        a.semilogy(t, curves[cell, 1.0], color=color, lw=2, label=f"{name}, trained, clip 1.0")
        a.semilogy(
            t, curves[cell, None], ":", color=color, lw=1.2, label=f"{name}, trained, no clip"
        )
        b = fig.add_subplot(grid[k, 1])
        steps = np.arange(1, len(norms[cell, None]) + 1)
        b.semilogy(steps, norms[cell, None], color="gray", lw=0.8, label="no clipping")
        b.semilogy(steps, norms[cell, 1.0], color=color, lw=1.2, label="clip 1.0")
        b.axhline(1.0, color="k", ls=":", lw=1)
        b.set_ylabel(f"{name}\ngrad norm", fontsize=8)
        b.legend(fontsize=7, loc="upper left")
        if k == 0:
            b.set_title("global gradient norm per step, before clipping")
    b.set_xlabel("optimizer step")
    a.set_xlabel("time step t (loss at step 100)")
    a.set_ylabel("mean |dL/dh_t|")
    a.set_title("gradient reaching each step (BasicMotions, float64)")
    a.legend(fontsize=7)
    run.save_plot(fig, "08_gradient_lesson.png")
    return run.finish()


if __name__ == "__main__":
    main()
