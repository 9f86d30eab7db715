"""Text generation: a character-level LSTM on the Python documentation, sampled on the edge.

Data: the documentation topics that ship with CPython (``pydoc_data.topics.topics``,
about 465,000 characters once cleaned to printable ASCII; PSF License), loaded with
:func:`edgeseq.train.data.load_text`. The first 90% trains, the last 10% is held out.

The training text is cut into parallel streams and learned with truncated BPTT, so
the model is used to a state carried over thousands of characters, as when it
streams. The held-out text is then streamed through the exported ONNX model in
chunks, the state carried from start to end, and scored: cross-entropy in nats per
character, bits per character and perplexity, next to what a unigram and a bigram
character model (add-one smoothed, counted on the training text) score. Samples come
from :meth:`edgeseq.runtime.StreamingPredictor.generate` at several temperatures and
top-k/top-p settings, and once through the ``edgeseq generate`` command line.

Run: ``python examples/04_text_generation.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _show, start

PROMPT = "The "
SETTINGS = [  # (temperature, top_k, top_p)
    (0.5, None, None),
    (0.8, None, None),
    (1.0, None, None),
    (0.8, 5, None),
    (1.0, None, 0.9),
]


def ngram_loss(train: np.ndarray, held: np.ndarray, vocab: int) -> tuple[float, float]:
    """Held-out nats per character of add-one unigram and bigram models of ``train``."""
    uni = np.bincount(train, minlength=vocab) + 1.0
    uni_loss = float(-np.mean(np.log(uni[held] / uni.sum())))
    big = np.ones((vocab, vocab))
    np.add.at(big, (train[:-1], train[1:]), 1.0)
    big /= big.sum(axis=1, keepdims=True)
    return uni_loss, float(-np.mean(np.log(big[held[:-1], held[1:]])))


def main(argv: list[str] | None = None) -> dict:
    run = start("04_text_generation", __doc__, argv)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.data import Vocabulary, load_text
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import TrainConfig, fit_stream

    text = load_text("pydoc")
    text = text[: run.pick(len(text), 60_000)]
    cut = int(0.9 * len(text))
    vocab = Vocabulary.from_text(text[:cut])
    ids = vocab.encode(text)  # (N,) int64; held-out characters unseen in training -> <unk>
    train_ids, held_ids = ids[:cut], ids[cut:]

    streams, length = 64, (cut - 1) // 64  # parallel streams through the training text
    chunk = train_ids[: streams * length + 1]
    x = chunk[:-1].reshape(streams, length)
    y = chunk[1:].reshape(streams, length)
    hidden = run.pick(256, 48)
    cfg = SeqConfig(
        cell="lstm",
        input_size=64,
        hidden_size=hidden,
        output_size=len(vocab),
        vocab_size=len(vocab),
        task="generate",
    )
    model = SeqModel(cfg)
    train = TrainConfig(
        epochs=run.pick(15, 1),
        batch_size=streams,
        lr=3e-3,
        tbptt=100,
        val_fraction=0.05,
        clip_norm=1.0,
        seed=run.seed,
        progress=not run.quick,
    )
    result = fit_stream(model, x, y, train)

    onnx_path = run.path("pydoc_lm.onnx")
    export_model(model, onnx_path, preprocessing=Preprocessing(vocab=vocab.to_list()))
    predictor = StreamingPredictor(onnx_path, threads=1)
    probe = held_ids[:400]
    model.eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(probe)[None])[0][0].numpy()
    run.parity("character logits", predictor, probe, reference=ref)

    # held-out score: the whole held-out text streamed in chunks of 256, state carried
    predictor.reset()
    losses = []
    for i in range(0, len(held_ids) - 1, 256):
        logits = predictor.step(held_ids[i : i + 256]).astype(np.float64)  # (T, V)
        target = held_ids[i + 1 : i + 257]
        logits = logits[: len(target)]
        top = logits.max(axis=1, keepdims=True)
        logz = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        losses.append(logz - logits[np.arange(len(target)), target])
    nats = float(np.mean(np.concatenate(losses)))
    uni, big = ngram_loss(train_ids, held_ids, len(vocab))
    rows = [
        [name, loss, loss / np.log(2), float(np.exp(loss))]
        for name, loss in (("LSTM (ONNX stream)", nats), ("bigram", big), ("unigram", uni))
    ]
    run.table(
        f"Held-out text: last {len(held_ids):,} characters of the pydoc topics",
        ["model", "nats/char", "bits/char", "perplexity"],
        rows,
    )
    best = result.best_epoch if result.best_epoch is not None else len(result.history) - 1
    run.table(
        "Training",
        ["measure", "value"],
        [
            ["training characters", f"{cut:,} ({streams} streams, TBPTT window 100)"],
            ["model", f"LSTM {hidden}, vocabulary {len(vocab)}"],
            ["epochs (best)", f"{len(result.history)} ({best + 1})"],
            ["validation loss (nats/char, stream tails)", result.best_val_loss],
            ["train seconds", round(result.seconds, 1)],
            ["ONNX size (KB)", round(onnx_path.stat().st_size / 1024, 1)],
        ],
    )
    run.record("heldout_nats_per_char", nats)
    run.record("heldout_perplexity", float(np.exp(nats)))

    samples = []
    for t, k, p in SETTINGS:
        pieces = predictor.generate(
            PROMPT, max_tokens=run.pick(200, 60), temperature=t, top_k=k, top_p=p, seed=run.seed
        )
        label = f"temperature {t}" + (f", top_k {k}" if k else "") + (f", top_p {p}" if p else "")
        print(f"\n--- sample, {label} ---\n{PROMPT}", end="", flush=True)
        out = []
        for piece in pieces:  # streamed: each character is printed as it is sampled
            print(piece, end="", flush=True)
            out.append(piece)
        print()
        samples.append({"settings": label, "text": PROMPT + "".join(out)})
    run.record("samples", samples)
    _cli_sample(run, onnx_path)

    plt = run.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    epochs = np.arange(1, len(result.history) + 1)
    ax.plot(epochs, [h.train_loss for h in result.history], "o-", label="train (running)")
    ax.plot(epochs, [h.val_loss for h in result.history], "o-", label="validation (stream tails)")
    ax.axhline(nats, color="C2", ls="--", label=f"held-out, ONNX stream ({nats:.3f})")
    ax.axhline(big, color="gray", ls=":", label=f"bigram baseline ({big:.3f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy, nats per character")
    ax.set_title("character LSTM on the pydoc topics")
    ax.legend()
    run.save_plot(fig, "04_text_generation.png")
    return run.finish()


def _cli_sample(run, onnx_path: Path) -> None:
    """Run the same kind of sampling through the ``edgeseq generate`` command."""
    argv = [
        "generate",
        _show(onnx_path),
        "-p",
        "def ",
        "-n",
        str(run.pick(160, 40)),
        "-t",
        "0.7",
        "--top-k",
        "10",
        "--seed",
        "1",
    ]
    print(f"\n$ edgeseq {shlex.join(argv)}", flush=True)
    exe = Path(sys.executable).with_name("edgeseq")
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "from edgeseq.cli import main; main()"]
    )
    proc = subprocess.run(cmd + argv, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    if proc.returncode != 0:
        raise RuntimeError(f"edgeseq generate failed: {proc.stderr.strip()}")
    print(proc.stdout, end="", flush=True)
    run.record("cli_sample", {"command": "edgeseq " + shlex.join(argv), "output": proc.stdout})


if __name__ == "__main__":
    main()
