"""One-to-many: an 8x8 handwritten digit in, its name spelled out character by character.

Data: scikit-learn's digits (``sklearn.datasets.load_digits``; a copy of the test set
of the UCI "Optical Recognition of Handwritten Digits" data set, Alpaydin and Kaynak
1998; shipped in the scikit-learn wheel, BSD-3-Clause): 1,797 images of 8x8 pixels,
loaded with :func:`edgeseq.train.data.load_digits`. A seeded 70/15/15 split.

The 64 pixel values are the condition: a linear bridge maps them to the GRU's first
state, and the decoder then spells the digit's name ("seven") from ``<bos>`` until it
emits ``<eos>``. Exported as a decoder plus an init model and decoded greedily through
:class:`edgeseq.runtime.EncoderDecoder`. The table reports whole-word accuracy (every
character right, and nothing after), how often the output is a real digit name at
all, and, as a yardstick, a logistic regression that classifies the same pixels.

Run: ``python examples/07_digit_names.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import start

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main(argv: list[str] | None = None) -> dict:
    run = start("07_digit_names", __doc__, argv)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import EncoderDecoder
    from edgeseq.train.data import Vocabulary, load_digits, train_val_test_split
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import SequenceData, TrainConfig, fit

    images, digits = load_digits()
    pixels = images.reshape(len(images), 64)
    tr, va, te = train_val_test_split(len(images), (0.7, 0.15, 0.15), seed=run.seed)
    if run.quick:
        tr, va, te = tr[:300], va[:60], te[:60]
    vocab = Vocabulary(sorted(set("".join(NAMES))))
    width = max(map(len, NAMES)) + 1
    tgt_in = np.zeros((10, width), np.int64)  # <bos> n a m e <pad>...
    tgt_out = np.zeros((10, width), np.int64)  # n a m e <eos> <pad>...
    for d, name in enumerate(NAMES):
        tgt_in[d, : len(name) + 1] = vocab.encode(name, bos=True)
        tgt_out[d, : len(name) + 1] = vocab.encode(name, eos=True)
    lengths = np.array([len(n) + 1 for n in NAMES])

    def data(rows: np.ndarray) -> SequenceData:
        d = digits[rows]
        return SequenceData(tgt_in[d], tgt_out[d], lengths[d], pixels[rows])

    cfg = SeqConfig(
        cell="gru",
        input_size=16,
        hidden_size=run.pick(64, 16),
        output_size=len(vocab),
        vocab_size=len(vocab),
        condition_size=64,
        topology="one_to_many",
        task="caption",
    )
    model = SeqModel(cfg)
    train = TrainConfig(
        epochs=run.pick(60, 3),
        batch_size=32,
        lr=3e-3,
        patience=10,
        seed=run.seed,
        progress=not run.quick,
    )
    result = fit(model, data(tr), train, val=data(va))

    path = run.path("digit_names.onnx")
    export_model(model, path, preprocessing=Preprocessing(vocab=vocab.to_list()))
    pair = EncoderDecoder(path, threads=1)
    cond = pixels[te[0]]
    teacher = tgt_in[digits[te[0]], : lengths[digits[te[0]]]]
    model.eval()
    with torch.inference_mode():
        state = model.init_state(condition=torch.from_numpy(cond)[None])
        ref = model(torch.from_numpy(teacher)[None], state)[0][0].numpy()
    run.parity(
        "decoder, teacher-forced",
        pair.decoder,
        teacher,
        reference=ref,
        begin=lambda: pair.start(cond),
    )

    words = []
    print("greedy decoding, streamed character by character:")
    for k, i in enumerate(te):
        chars = []
        if k < 5:
            print(f"  digit {digits[i]} -> ", end="", flush=True)
        for token in pair.greedy(pixels[i], vocab.BOS, vocab.EOS, max_len=width + 2):
            chars.append(vocab.decode([token]))
            if k < 5:
                print(chars[-1], end="", flush=True)
        if k < 5:
            print(flush=True)
        words.append("".join(chars))
    truth = [NAMES[d] for d in digits[te]]
    ok = np.array([w == t for w, t in zip(words, truth)])
    valid = float(np.mean([w in NAMES for w in words]))
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=3000).fit(pixels[tr], digits[tr])
    yardstick = float(np.mean(clf.predict(pixels[te]) == digits[te]))
    best = result.best_epoch if result.best_epoch is not None else len(result.history) - 1
    run.table(
        f"Held-out digits ({len(te)} images)",
        ["measure", "value"],
        [
            ["whole-word accuracy (ONNX, greedy)", float(ok.mean())],
            ["outputs that are a digit name at all", valid],
            ["logistic regression on the pixels (classification)", yardstick],
            ["images train / val / test", f"{len(tr)} / {len(va)} / {len(te)}"],
            ["epochs (best)", f"{len(result.history)} ({best + 1})"],
            ["train seconds", round(result.seconds, 1)],
        ],
    )
    run.table(
        "Whole-word accuracy per digit",
        ["digit", "name", "images", "accuracy"],
        [
            [d, NAMES[d], int(np.sum(digits[te] == d)), float(ok[digits[te] == d].mean())]
            for d in range(10)
        ],
    )
    run.record("word_accuracy", float(ok.mean()))
    run.record(
        "mistakes",
        [{"digit": int(digits[i]), "output": w} for i, w, good in zip(te, words, ok) if not good],
    )

    plt = run.pyplot()
    show = list(range(min(24, len(te))))
    wrong = [k for k in range(len(te)) if not ok[k]][:6]  # make sure mistakes are visible
    show = (wrong + [k for k in show if k not in wrong])[:24]
    fig, axes = plt.subplots(3, 8, figsize=(9, 4))
    for ax, k in zip(axes.flat, show):
        ax.imshow(images[te[k]], cmap="gray_r")
        title = (words[k] or "(empty)") + ("" if ok[k] else f" (a {digits[te[k]]})")
        ax.set_title(title, color="k" if ok[k] else "red", fontsize=10)
        ax.axis("off")
    fig.suptitle(
        f"held-out digits and the names the ONNX decoder spelled (red: wrong); "
        f"accuracy {ok.mean():.1%}"
    )
    run.save_plot(fig, "07_digit_names.png")
    return run.finish()


if __name__ == "__main__":
    main()
