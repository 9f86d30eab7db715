"""Sentiment (many-to-one): a running positive/negative reading as each word arrives.

Data: the UCI "Sentiment Labelled Sentences" (Kotzias, Denil, de Freitas and Smyth,
KDD 2015): 1,000 review sentences each from Amazon, IMDb and Yelp, half positive,
as test fixtures of the npm package ``sentiment`` 5.0.2 (MIT licence). Fetched once
with ``npm pack`` into a cache by :func:`edgeseq.train.data.load_sentiment`; needs ``npm``.

Sentences are lower-cased and split into words and punctuation; words seen at least
twice in the training split form the vocabulary (others become ``<unk>``). A seeded
70/15/15 split gives train, validation (picks the epoch) and test sentences. A
many-to-one GRU is trained on the label at each sentence's last word; streamed word
by word through the ONNX runtime, its output after every word is the running
sentiment. For scale, the table also shows a bag-of-words logistic regression
(scikit-learn) on the same split: 3,000 short sentences are little data for a
recurrent model, and word order helps less here than one might hope.

Run: ``python examples/05_sentiment.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import softmax, start

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
SOURCES = ("amazon", "imdb", "yelp")


def words(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", sentence.lower())


def main(argv: list[str] | None = None) -> dict:
    run = start("05_sentiment", __doc__, argv)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.data import load_sentiment, train_val_test_split
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import SequenceData, TrainConfig, fit

    pairs = load_sentiment()
    source = np.repeat(np.arange(len(SOURCES)), [len(pairs) // 3] * 3)
    if run.quick:
        keep = np.random.default_rng(run.seed).permutation(len(pairs))[:600]
        pairs, source = [pairs[i] for i in keep], source[keep]
    tokens = [words(s) for s, _ in pairs]
    labels = np.array([c for _, c in pairs], dtype=np.int64)
    tr, va, te = train_val_test_split(len(pairs), (0.7, 0.15, 0.15), seed=run.seed)
    counts = Counter(w for i in tr for w in tokens[i])
    vocab = SPECIALS + sorted(w for w, c in counts.items() if c >= 2)
    index = {w: i for i, w in enumerate(vocab)}
    ids = [np.array([index.get(w, 1) for w in t] or [1], dtype=np.int64) for t in tokens]

    def data(rows: np.ndarray) -> SequenceData:
        width = max(len(ids[i]) for i in rows)
        x = np.zeros((len(rows), width), dtype=np.int64)  # <pad> after each sentence
        for j, i in enumerate(rows):
            x[j, : len(ids[i])] = ids[i]
        return SequenceData(x, labels[rows], np.array([len(ids[i]) for i in rows]))

    cfg = SeqConfig(
        cell="gru",
        input_size=32,  # small: 2,100 training sentences overfit a larger model in 2 epochs
        hidden_size=run.pick(32, 16),
        output_size=2,
        vocab_size=len(vocab),
        task="classify",
        topology="many_to_one",
        extra={"labels": ["negative", "positive"]},
    )
    model = SeqModel(cfg)
    train = TrainConfig(
        epochs=run.pick(30, 2),
        batch_size=32,
        lr=run.pick(1e-3, 3e-3),
        patience=5,
        seed=run.seed,
        progress=not run.quick,
    )
    result = fit(model, data(tr), train, val=data(va))

    onnx_path = run.path("sentiment.onnx")
    export_model(model, onnx_path, preprocessing=Preprocessing(vocab=vocab))
    predictor = StreamingPredictor(onnx_path, threads=1)
    probe = np.concatenate([ids[i] for i in te[:20]])  # many sentences back to back
    model.eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(probe)[None])[0][0].numpy()
    run.parity("running logits", predictor, probe, reference=ref)

    running = {}  # test row -> P(positive) after each word, streamed one word at a time
    for i in te:
        predictor.reset()
        running[i] = np.array([softmax(predictor.step(np.int64(w)))[1] for w in ids[i]])
    pred = np.array([running[i][-1] > 0.5 for i in te], dtype=np.int64)
    ok = pred == labels[te]
    bow = _bag_of_words(pairs, labels, tr, te)
    rows = [["all", len(te), float(ok.mean()), float(bow.mean())]]
    for s, name in enumerate(SOURCES):
        m = source[te] == s
        rows.append([name, int(m.sum()), float(ok[m].mean()), float(bow[m].mean())])
    run.table(
        "Test accuracy (label read after the last word, from the ONNX stream)",
        ["source", "sentences", "GRU (streamed)", "bag-of-words logistic regression"],
        rows,
    )
    flips = float(np.mean([np.any(np.diff(running[i] > 0.5)) for i in te]))
    best = result.best_epoch if result.best_epoch is not None else len(result.history) - 1
    run.table(
        "Training",
        ["measure", "value"],
        [
            ["sentences train / val / test", f"{len(tr)} / {len(va)} / {len(te)}"],
            ["vocabulary (words seen twice or more)", len(vocab)],
            ["epochs (best)", f"{len(result.history)} ({best + 1})"],
            ["test sentences whose running verdict changes at least once", flips],
            ["train seconds", round(result.seconds, 1)],
        ],
    )
    run.record("test_accuracy", float(ok.mean()))
    run.record("bow_accuracy", float(bow.mean()))

    shown = [i for i in te if 6 <= len(ids[i]) <= 14][:8]
    print("\nrunning P(positive) as each word arrives:")
    for i in shown[:4]:
        trail = " ".join(f"{w}({p:.2f})" for w, p in zip(tokens[i], running[i]))
        print(f"  [{'pos' if labels[i] else 'neg'}] {trail}")
    _plot(run, [(tokens[i], running[i], labels[i]) for i in shown])
    return run.finish()


def _bag_of_words(pairs, labels, tr, te) -> np.ndarray:
    """Per test sentence, whether a unigram+bigram logistic regression gets it right."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(ngram_range=(1, 2), min_df=1)
    xtr = vec.fit_transform([pairs[i][0] for i in tr])
    clf = LogisticRegression(max_iter=2000).fit(xtr, labels[tr])
    return clf.predict(vec.transform([pairs[i][0] for i in te])) == labels[te]


def _plot(run, rows) -> None:
    plt = run.pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 0.62 * len(rows) + 0.8))
    for ax, (toks, probs, label) in zip(np.atleast_1d(axes), rows):
        ax.imshow(probs[None], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        for k, w in enumerate(toks[: len(probs)]):
            short = w if len(w) <= 9 else w[:8] + "."
            ax.text(k, 0, short, ha="center", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([0], [f"true: {'pos' if label else 'neg'}"], fontsize=8)
        ax.grid(False)
    fig.suptitle("running P(positive) after each word (red = negative, green = positive)")
    run.save_plot(fig, "05_sentiment.png")


if __name__ == "__main__":
    main()
