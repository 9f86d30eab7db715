"""Translation with attention: English program messages into French, character by character.

Data: the English -> French message catalogues that ship inside packages: Django's
(``django/**/locale/fr/LC_MESSAGES/*.mo``, BSD-3-Clause) and Debian's
``/usr/share/locale/fr/LC_MESSAGES/*.mo`` of the essential, standard and developer tools
listed in :data:`edgeseq.train.catalogues.DEBIAN_DOMAINS` (coreutils, dpkg, bash, tar,
apt, glibc, git, binutils, gnupg, ...; each under its package's licence, GPL-2+/GPL-3+
for most, LGPL-2.1+ for glibc and systemd). Pairs whose sides both have at most 40
characters are kept, one per English string; a seeded 90/10 split holds pairs out.
Quick mode uses Django's catalogues only.

Two character-level GRU encoder-decoders of the same size are trained with teacher
forcing: one whose encoder's final state is all the decoder gets, and one whose
decoder also attends over every encoder output (Luong's "general" attention,
:class:`edgeseq.train.models.Seq2Seq` with ``attention="general"``). The attention model
is exported as two ONNX files; the encoder's outputs become the decoder's per-stream
memory, recorded in its contract, and :class:`edgeseq.runtime.EncoderDecoder` decodes
greedily, token by token. Scores on the held-out pairs: character error rate, exact
match, BLEU and chrF (sacrebleu), against copying the English, a translation memory
(the French of the most similar English training string: character n-gram TF-IDF,
then difflib among the ten nearest) and the model without attention.

Run: ``python examples/06_translation.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import keep, reuse, reuse_option, start

MAX_CHARS = 40


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute, each cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def scores(hyps: list[str], refs: list[str]) -> list[float]:
    """[CER (edits / reference characters, summed), exact match, BLEU, chrF]."""
    import sacrebleu

    cer = sum(edit_distance(h, r) for h, r in zip(hyps, refs)) / sum(len(r) for r in refs)
    exact = float(np.mean([h == r for h, r in zip(hyps, refs)]))
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    return [round(cer, 4), round(exact, 4), round(bleu, 2), round(chrf, 2)]


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


def memory_baseline(train: list[tuple[str, str]], queries: list[str]) -> list[str]:
    """The French of the most similar English training string, for each query."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    sources = [e for e, _ in train]
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    known = vec.fit_transform(sources)  # (train, n-grams)
    sims = (vec.transform(queries) @ known.T).toarray()
    out = []
    for q, row in zip(queries, np.argsort(-sims, axis=1)[:, :10]):
        best = max(row, key=lambda j: difflib.SequenceMatcher(None, q, sources[j]).ratio())
        out.append(train[best][1])
    return out


def greedy_batch(model, sources: list[np.ndarray], max_len: int, batch: int = 128) -> list:
    """Greedy decoding in PyTorch, many pairs at once: token ids without BOS/EOS."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    from edgeseq.train.data import Vocabulary

    result = []
    model.eval()
    with torch.inference_mode():
        for k in range(0, len(sources), batch):
            rows = [torch.from_numpy(s) for s in sources[k : k + batch]]
            lengths = torch.tensor([len(r) for r in rows])
            state = model.encode(pad_sequence(rows, batch_first=True), lengths)
            token = torch.full((len(rows), 1), Vocabulary.BOS)
            steps = []
            for _ in range(max_len):
                logits, state = model.decoder(token, state)
                token = logits[:, -1].argmax(-1, keepdim=True)
                steps.append(token)
            for ids in torch.cat(steps, 1).tolist():
                result.append(ids[: ids.index(Vocabulary.EOS)] if Vocabulary.EOS in ids else ids)
    return result


def _options(parser) -> None:
    reuse_option(parser)
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs of both models (default 12)"
    )


def main(argv: list[str] | None = None) -> dict:
    run = start("06_translation", __doc__, argv, add_args=_options)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import EncoderDecoder
    from edgeseq.train.data import Vocabulary, train_val_test_split
    from edgeseq.train.models import Seq2Seq, SeqConfig
    from edgeseq.train.training import TrainConfig, fit_seq2seq

    pairs, origin = load_pairs(run.quick)
    tr, _, te = train_val_test_split(len(pairs), (0.9, 0.0, 0.1), seed=run.seed)
    if run.quick:
        tr, te = tr[:160], te[:12]
    train_pairs, test_pairs = [pairs[i] for i in tr], [pairs[i] for i in te]
    run.table(
        "Catalogues read (English -> French pairs; a repeated English string counts once)",
        ["catalogue", "package", "pairs"],
        [*origin, ["kept: both sides <= 40 characters", "", len(pairs)]],
    )
    src_vocab = Vocabulary.from_text("".join(e for e, _ in train_pairs))
    tgt_vocab = Vocabulary.from_text("".join(f for _, f in train_pairs))
    sources = [src_vocab.encode(e) for e, _ in train_pairs]
    targets = [tgt_vocab.encode(f, bos=True, eos=True) for _, f in train_pairs]

    hidden, embed = run.pick(160, 16), run.pick(64, 8)

    def build(attention: str | None) -> Seq2Seq:
        torch.manual_seed(run.seed)
        enc = SeqConfig(
            cell="gru", input_size=embed, hidden_size=hidden, output_size=hidden,
            vocab_size=len(src_vocab), task="translate",
        )  # fmt: skip
        dec = SeqConfig(
            cell="gru", input_size=embed, hidden_size=hidden, output_size=len(tgt_vocab),
            vocab_size=len(tgt_vocab), task="translate",
        )  # fmt: skip
        return Seq2Seq(enc, dec, attention=attention)

    train = TrainConfig(
        epochs=run.args.epochs or run.pick(12, 2),
        batch_size=64 if not run.quick else 16,
        lr=2e-3,
        val_fraction=0.05,
        patience=3,
        seed=run.seed,
        max_steps=None if not run.quick else 12,
        progress=not run.quick,
    )
    models, fits = {}, {}
    for name, attention in (("attention", "general"), ("no attention", None)):
        print(f"\ntraining the GRU encoder-decoder with {name}", flush=True)
        models[name] = build(attention)
        saved = run.path(f"translate-{attention or 'plain'}.pt")
        key = f"{attention} {hidden} {embed} {train} {len(tr)} {len(src_vocab)} {len(tgt_vocab)}"
        fits[name] = reuse(run, saved, models[name], key)
        if fits[name] is None:
            fits[name] = fit_seq2seq(models[name], sources, targets, train)
            keep(saved, models[name], key, fits[name])
    model = models["attention"].eval()

    # ---- export the attention model and check it streams as PyTorch computes it
    path = run.path("translate.onnx")
    export_model(
        model,
        path,
        preprocessing=Preprocessing(vocab=tgt_vocab.to_list()),
        source_preprocessing=Preprocessing(vocab=src_vocab.to_list()),
        max_source=MAX_CHARS,
    )
    pair = EncoderDecoder(path, threads=1)
    en, fr = test_pairs[0]
    src, tgt_in = src_vocab.encode(en), tgt_vocab.encode(fr, bos=True)
    with torch.inference_mode():
        state = model.encode(torch.from_numpy(src)[None])
        ref_enc = model.encoder(torch.from_numpy(src)[None])[0][0].numpy()
        ref_dec = model.decoder(torch.from_numpy(tgt_in)[None], state)[0][0].numpy()
    run.parity("encoder", pair.encoder, src, reference=ref_enc)
    run.parity(
        "attention decoder, teacher-forced, memory from the encoder",
        pair.decoder,
        tgt_in,
        reference=ref_dec,
        begin=lambda: pair.start(src),
    )

    # ---- decode the held-out pairs: ONNX token by token, PyTorch in batches
    bos, eos, max_len = Vocabulary.BOS, Vocabulary.EOS, 2 * MAX_CHARS
    test_src = [src_vocab.encode(e) for e, _ in test_pairs]
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
        "translation memory (closest English)": memory_baseline(
            train_pairs, [e for e, _ in test_pairs]
        ),
        "copy the English": [e for e, _ in test_pairs],
    }
    rows = [[name, *scores(h, refs)] for name, h in systems.items()]
    run.table(
        f"Held-out pairs ({len(te)}, English -> French, at most {MAX_CHARS} characters)",
        ["system", "CER", "exact match", "BLEU", "chrF"],
        rows,
    )
    best_base = {
        metric: (min if metric == "CER" else max)(r[i + 1] for r in rows[1:])
        for i, metric in enumerate(["CER", "exact match", "BLEU", "chrF"])
    }
    margins = {
        metric: round(abs(rows[0][i + 1] - best_base[metric]), 4)
        for i, metric in enumerate(best_base)
    }
    beats = {
        m: (rows[0][i + 1] < best_base[m]) if m == "CER" else (rows[0][i + 1] > best_base[m])
        for i, m in enumerate(best_base)
    }
    run.record("attention_beats_every_baseline", beats)
    run.record("margin_over_best_baseline", margins)
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
            ["GRU hidden / embedding", f"{hidden} / {embed}"],
            *training,
            ["ONNX greedy == PyTorch greedy (pairs)", f"{agree} / {len(te)}"],
        ],
    )
    assert agree >= 0.99 * len(te), f"ONNX and PyTorch greedy agree on only {agree}/{len(te)}"
    run.record("scores", {r[0]: dict(zip(["cer", "exact", "bleu", "chrf"], r[1:])) for r in rows})
    run.record(
        "examples",
        [
            {"en": e, "fr": r, **{n: h[k] for n, h in systems.items()}}
            for k, ((e, _), r) in enumerate(zip(test_pairs[:40], refs))
        ],
    )
    _plot(run, model, src_vocab, tgt_vocab, test_pairs, torch_ids["attention"], rows)
    return run.finish()


def _plot(run, model, src_vocab, tgt_vocab, test_pairs, ids, rows) -> None:
    """Attention weights of two held-out pairs, and the four systems' scores."""
    import torch

    from edgeseq.train.data import Vocabulary

    picks = sorted(range(len(test_pairs)), key=lambda k: -len(test_pairs[k][0]))
    picks = [k for k in picks if 12 <= len(ids[k]) <= 34][:2] or [0]
    plt = run.pyplot()
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(12, 4.2))
    for ax, k in zip(axes, picks):
        en = test_pairs[k][0]
        src = torch.from_numpy(src_vocab.encode(en))[None]
        tokens = torch.tensor([[Vocabulary.BOS, *ids[k]]])
        with torch.inference_mode():
            *rnn, memory, mask = model.encode(src)
            _, _, weights = model.decoder.attend(tokens, memory, mask, tuple(rnn))
        out = tgt_vocab.decode(ids[k])
        ax.imshow(weights[0, : len(out) + 1].numpy(), cmap="Greys", aspect="auto")
        ax.set_xticks(range(len(en)), list(en), fontsize=7)
        ax.set_yticks(range(len(out) + 1), [*out, "<eos>"], fontsize=7)
        ax.grid(False)
        ax.set_title(f"attention: {en!r}"[:60], fontsize=8)
        ax.set_xlabel("English (encoder memory)")
        ax.set_ylabel("French, as decoded")
    ax = axes[-1]
    names = [r[0].split(" (")[0] for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r[1] * 100 for r in rows], 0.4, label="CER %")
    ax.bar(x + 0.2, [r[3] for r in rows], 0.4, label="BLEU")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_title("held-out pairs: lower CER, higher BLEU is better")
    ax.legend()
    run.save_plot(fig, "06_translation.png")


if __name__ == "__main__":
    main()
