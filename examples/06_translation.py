"""Translation with attention: English program messages into French, character by character.

Data: the English -> French message catalogues that ship inside packages: Django's
(``django/**/locale/fr/LC_MESSAGES/*.mo``, BSD-3-Clause) and Debian's
``/usr/share/locale/fr/LC_MESSAGES/*.mo`` of the essential, standard and developer tools
listed in :data:`edgeseq.train.catalogues.DEBIAN_DOMAINS` (coreutils, dpkg, bash, tar,
apt, glibc, git, binutils, gnupg, ...; each under its package's licence, GPL-2+/GPL-3+
for most, LGPL-2.1+ for glibc and systemd). Pairs whose sides both have at most 40
characters are kept, one per English string; a seeded 90/10 split holds pairs out.
Quick mode uses Django's catalogues only.

The translation memory is both a baseline and an input (``--memory-input``, the default;
neural fuzzy repair, as localisation tools pair a memory with machine translation): the
encoder reads the English, a separator (U+001E) and the French of the most similar
English training string (character n-gram TF-IDF, then difflib among the ten nearest;
for a training pair the nearest *other* training pair, so training sees the memory as
the device will). The memory is :class:`edgeseq.runtime.TranslationMemory` (numpy only;
the same picks as scikit-learn's TfidfVectorizer), saved as ``translate.memory.json``
beside ``translate.onnx`` so a device recalls as training did:
``edgeseq generate translate.onnx --memory translate.memory.json --source TEXT``. With
``--no-memory-input`` it reads the English alone.

Two character-level GRU encoder-decoders of the same size are trained with teacher
forcing and dropout (``--dropout``, default 0.3, on both GRUs' inputs, the decoder's
output and the attention's memory): one
whose encoder's final state is all the decoder gets, and one whose decoder also attends
over every encoder output (Luong's "general" attention,
:class:`edgeseq.train.models.Seq2Seq` with ``attention="general"``). The attention model
is exported as two ONNX files; the encoder's outputs become the decoder's per-stream
memory, recorded in its contract, and :class:`edgeseq.runtime.EncoderDecoder` decodes
greedily, token by token, and with a beam search (``--beam``, default 5 hypotheses;
``--length-penalty``, default 0: GNMT's length normalisation; ``EncoderDecoder.beam``,
checked against PyTorch's batch beam search). Each model
halves its learning rate after an epoch without a better validation loss and stops
after 3 such epochs (at most ``--epochs``, default 40). Scores on the held-out pairs:
character error rate, exact match, BLEU and chrF (sacrebleu), against copying the
English, the translation memory alone and the model without attention.

Run: ``python examples/06_translation.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import reuse_option, start
from _seq2seq import (
    METRICS,
    attention_panel,
    beam_batch,
    beam_options,
    compare,
    export_checked,
    greedy_batch,
    gru_pair_builder,
    scores,
    scores_panel,
    train_with_and_without_attention,
)

from edgeseq.runtime import TranslationMemory

MAX_CHARS = 40
SEPARATOR = "\x1e"  # between the English and the memory's French in the encoder's input


def load_pairs(quick: bool) -> tuple[list[tuple[str, str]], list[list]]:
    """Pairs of at most MAX_CHARS per side, and a table of where they came from."""
    from edgeseq.train.catalogues import DEBIAN_DOMAINS, load_debian_pairs, merge_pairs
    from edgeseq.train.data import load_translation_pairs

    groups = {"django (all catalogues)": load_translation_pairs("fr")}
    if not quick:
        groups.update(load_debian_pairs("fr"))
    kept = [(e, f) for e, f in merge_pairs(groups.values()) if max(len(e), len(f)) <= MAX_CHARS]
    rows = [[name, DEBIAN_DOMAINS.get(name, "Django (PyPI)"), len(p)] for name, p in groups.items()]
    return kept, rows


def _options(parser) -> None:
    reuse_option(parser)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="most training epochs of both models (default 40; each stops when its "
        "validation loss has not improved for 3 epochs)",
    )
    beam_options(parser, 0.0)
    parser.add_argument(
        "--memory-input",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the encoder reads the English, a separator and the translation memory's "
        "French (default); --no-memory-input: the English alone",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.3,
        help="dropout while training on both GRUs' inputs, the decoder's output and the "
        "attention's memory (default 0.3)",
    )


def main(argv: list[str] | None = None) -> dict:
    run = start("06_translation", __doc__, argv, add_args=_options)

    from edgeseq.train.data import Vocabulary, train_val_test_split
    from edgeseq.train.training import TrainConfig

    pairs, origin = load_pairs(run.quick)
    tr, _, te = train_val_test_split(len(pairs), (0.9, 0.0, 0.1), seed=run.seed)
    if run.quick:
        tr, te = tr[:160], te[:12]
    train_pairs, test_pairs = [pairs[i] for i in tr], [pairs[i] for i in te]
    train_en, train_fr = [e for e, _ in train_pairs], [f for _, f in train_pairs]
    test_en = [e for e, _ in test_pairs]
    # the device's memory (numpy only), saved beside translate.onnx for the device
    memory = TranslationMemory(train_en, train_fr, separator=SEPARATOR)
    memory.save(run.path("translate.memory.json"))
    recalled = memory.lookup_batch(test_en)  # the memory's answers
    with_memory = run.args.memory_input
    if with_memory:  # each training pair recalls the nearest *other* training pair
        train_src = [f"{e}{SEPARATOR}{m}" for e, m in zip(train_en, memory.leave_one_out())]
        test_src_text = [f"{e}{SEPARATOR}{m}" for e, m in zip(test_en, recalled)]
    else:
        train_src, test_src_text = train_en, test_en
    run.table(
        "Catalogues read (English -> French pairs; a repeated English string counts once)",
        ["catalogue", "package", "pairs"],
        [*origin, ["kept: both sides <= 40 characters", "", len(pairs)]],
    )
    src_vocab = Vocabulary.from_text("".join(train_src))
    tgt_vocab = Vocabulary.from_text("".join(train_fr))
    sources = [src_vocab.encode(s) for s in train_src]
    targets = [tgt_vocab.encode(f, bos=True, eos=True) for _, f in train_pairs]

    hidden, embed = run.pick(160, 16), run.pick(64, 8)

    dropout = run.args.dropout
    build = gru_pair_builder(len(src_vocab), len(tgt_vocab), hidden, embed, run.seed, dropout)

    train = TrainConfig(
        epochs=run.args.epochs or run.pick(40, 2),
        batch_size=64 if not run.quick else 16,
        lr=2e-3,
        val_fraction=0.05,
        patience=3,
        lr_decay=0.5,
        seed=run.seed,
        max_steps=None if not run.quick else 12,
        progress=not run.quick,
    )
    sizes = f"{len(tr)} {len(src_vocab)} {len(tgt_vocab)}"
    key = f"{hidden} {embed} {dropout} {with_memory} {train} {sizes}"
    models, fits = train_with_and_without_attention(
        run, build, train, (sources, targets), "translate", key
    )
    model = models["attention"].eval()

    # ---- export the attention model and check it streams as PyTorch computes it
    max_source = 2 * MAX_CHARS + 1 if with_memory else MAX_CHARS
    example = (test_src_text[0], test_pairs[0][1])
    pair = export_checked(
        run, model, run.path("translate.onnx"), (src_vocab, tgt_vocab), max_source, example
    )

    # ---- decode the held-out pairs: ONNX token by token, PyTorch in batches
    bos, eos, max_len = Vocabulary.BOS, Vocabulary.EOS, 2 * MAX_CHARS
    test_src = [src_vocab.encode(s) for s in test_src_text]
    torch_ids = {n: greedy_batch(m, test_src, max_len) for n, m in models.items()}
    hyps, agree = [], 0
    for k, ((en, fr), s) in enumerate(zip(test_pairs, test_src)):
        show = k < 5
        if show:
            print(f"  {en!r}\n    -> ", end="", flush=True)
        ids = []
        for token in pair.greedy(s, bos, eos, max_len=max_len):
            ids.append(token)
            if show:  # the French streams out character by character, as decoded
                print(tgt_vocab.decode([token]), end="", flush=True)
        if show:
            print(f"\n    reference {fr!r}", flush=True)
        hyps.append(tgt_vocab.decode(ids))
        agree += ids == torch_ids["attention"][k]
    refs = [f for _, f in test_pairs]
    systems = {
        "GRU + attention (ONNX, greedy)": hyps,
        "GRU, no attention (greedy)": [tgt_vocab.decode(i) for i in torch_ids["no attention"]],
        "translation memory (closest English)": recalled,
        "copy the English": test_en,
    }
    beam, beam_agree = run.pick(run.args.beam, min(run.args.beam, 2)), None
    if beam > 1:  # the exported pair's beam search, checked against PyTorch's batch beam
        alpha = run.args.length_penalty
        found = [
            list(pair.beam(s, bos, eos, max_len, width=beam, length_penalty=alpha))
            for s in test_src
        ]
        ref = beam_batch(models["attention"], test_src, max_len, beam, length_penalty=alpha)
        beam_agree = sum(a == b for a, b in zip(found, ref))
        systems = {
            f"GRU + attention (ONNX, beam {beam}{_alpha(alpha)})": [
                tgt_vocab.decode(i) for i in found
            ],
            **systems,
        }
    rows = [[name, *scores(h, refs)] for name, h in systems.items()]
    run.table(
        f"Held-out pairs ({len(te)}, English -> French, at most {MAX_CHARS} characters)",
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
    training = [
        [f"{n}: epochs (best), best val loss nats/char, seconds",
         f"{len(f.history)} ({(f.best_epoch or 0) + 1}), {f.best_val_loss:.3f}, {f.seconds:.0f}"]
        for n, f in fits.items()
    ]  # fmt: skip
    run.table(
        "Training",
        ["measure", "value"],
        [
            ["pairs train / held out", f"{len(tr)} / {len(te)}"],
            ["characters English / French (+4 specials)", f"{len(src_vocab)} / {len(tgt_vocab)}"],
            ["GRU hidden / embedding / dropout", f"{hidden} / {embed} / {dropout}"],
            ["encoder reads", "English + memory's French" if with_memory else "English"],
            *training,
            ["ONNX greedy == PyTorch greedy (pairs)", f"{agree} / {len(te)}"],
            *([] if beam_agree is None else [[f"ONNX beam {beam} == PyTorch beam {beam} (pairs)",
                                              f"{beam_agree} / {len(te)}"]]),
        ],
    )  # fmt: skip
    assert agree >= 0.99 * len(te), f"ONNX and PyTorch greedy agree on only {agree}/{len(te)}"
    assert beam_agree is None or beam_agree >= 0.99 * len(te), f"beams agree on {beam_agree}"
    run.record("scores", {r[0]: dict(zip(["cer", "exact", "bleu", "chrf"], r[1:])) for r in rows})
    run.record(
        "examples",
        [
            {"en": e, "fr": r, **{n: h[k] for n, h in systems.items()}}
            for k, ((e, _), r) in enumerate(zip(test_pairs[:40], refs))
        ],
    )
    _plot(run, model, src_vocab, tgt_vocab, test_pairs, test_src_text, torch_ids["attention"], rows)
    return run.finish()


def _plot(run, model, src_vocab, tgt_vocab, test_pairs, src_text, ids, rows) -> None:
    """Attention weights of two held-out pairs, and the systems' scores."""
    picks = sorted(range(len(test_pairs)), key=lambda k: -len(test_pairs[k][0]))
    picks = [k for k in picks if 12 <= len(ids[k]) <= 34][:2] or [0]
    plt = run.pyplot()
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(12, 4.2))
    for ax, k in zip(axes, picks):
        en, text = test_pairs[k][0], src_text[k]
        labels = ["|" if c == SEPARATOR else c for c in text]
        attention_panel(
            ax, model, src_vocab.encode(text), ids[k], labels, list(tgt_vocab.decode(ids[k])),
            f"attention: {en!r}", ("input: English | memory's French", "French, as decoded"),
        )  # fmt: skip
    scores_panel(axes[-1], rows, "CER", "held-out pairs (CER: lower is better)")
    run.save_plot(fig, "06_translation.png")


def _alpha(alpha: float) -> str:
    """The beam row's note of a length penalty (none for 0, the plain log-probability)."""
    return f", length penalty {alpha:g}" if alpha else ""


if __name__ == "__main__":
    main()
