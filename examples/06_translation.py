"""Translation (sequence to sequence): Django's English UI strings into French.

Data: the English -> French message catalogs shipped in the PyPI package ``Django``
(``django/**/locale/fr/LC_MESSAGES/*.mo``; translations by the Django community,
BSD-3-Clause), read with :func:`edgeseq.train.data.load_translation_pairs`. About 760
pairs; those with both sides at most 40 characters are kept (language names, field
labels, short messages). A seeded 85/15 split holds pairs out.

A character-level GRU encoder-decoder without attention (the encoder's final state
starts the decoder) is trained with teacher forcing, exported as two ONNX files and
decoded greedily through :class:`edgeseq.runtime.EncoderDecoder`, the French printed
character by character as it is decoded. Scores on the held-out pairs: exact match and
character error rate (edit distance / reference length), next to two baselines that
need no model: copying the English unchanged, and a translation memory that returns
the French of the most similar English training string (difflib). Six hundred pairs
are very little data for a translator; expect modest numbers.

Run: ``python examples/06_translation.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import start

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


def scores(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    """(exact match, character error rate summed over pairs) of hypotheses."""
    exact = float(np.mean([h == r for h, r in zip(hyps, refs)]))
    cer = sum(edit_distance(h, r) for h, r in zip(hyps, refs)) / sum(len(r) for r in refs)
    return exact, cer


def main(argv: list[str] | None = None) -> dict:
    run = start("06_translation", __doc__, argv)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import EncoderDecoder
    from edgeseq.train.data import Vocabulary, load_translation_pairs, train_val_test_split
    from edgeseq.train.models import Seq2Seq, SeqConfig
    from edgeseq.train.training import TrainConfig, fit_seq2seq

    pairs = [(e, f) for e, f in load_translation_pairs("fr") if max(len(e), len(f)) <= MAX_CHARS]
    tr, _, te = train_val_test_split(len(pairs), (0.85, 0.0, 0.15), seed=run.seed)
    if run.quick:
        tr, te = tr[:120], te[:12]
    src_vocab = Vocabulary.from_text("".join(pairs[i][0] for i in tr))
    tgt_vocab = Vocabulary.from_text("".join(pairs[i][1] for i in tr))
    sources = [src_vocab.encode(pairs[i][0]) for i in tr]
    targets = [tgt_vocab.encode(pairs[i][1], bos=True, eos=True) for i in tr]

    hidden = run.pick(256, 32)
    enc = SeqConfig(
        cell="gru",
        input_size=64,
        hidden_size=hidden,
        output_size=1,
        vocab_size=len(src_vocab),
        task="translate",
    )
    dec = SeqConfig(
        cell="gru",
        input_size=64,
        hidden_size=hidden,
        output_size=len(tgt_vocab),
        vocab_size=len(tgt_vocab),
        task="translate",
    )
    model = Seq2Seq(enc, dec)
    train = TrainConfig(
        epochs=run.pick(120, 3),
        batch_size=32,
        lr=2e-3,
        val_fraction=0.1,
        patience=25,
        seed=run.seed,
        progress=not run.quick,
    )
    result = fit_seq2seq(model, sources, targets, train)

    path = run.path("translate.onnx")
    export_model(
        model,
        path,
        preprocessing=Preprocessing(vocab=tgt_vocab.to_list()),
        source_preprocessing=Preprocessing(vocab=src_vocab.to_list()),
    )
    pair = EncoderDecoder(path, threads=1)
    en, fr = pairs[te[0]]
    src = src_vocab.encode(en)
    tgt_in = tgt_vocab.encode(fr, bos=True)
    model.eval()
    with torch.inference_mode():
        state = model.encode(torch.from_numpy(src)[None])
        ref_enc = model.encoder(torch.from_numpy(src)[None])[0][0].numpy()
        ref_dec = model.decoder(torch.from_numpy(tgt_in)[None], state)[0][0].numpy()
    run.parity("encoder", pair.encoder, src, reference=ref_enc)
    run.parity(
        "decoder, teacher-forced",
        pair.decoder,
        tgt_in,
        reference=ref_dec,
        begin=lambda: pair.start(src),
    )

    bos, eos = Vocabulary.BOS, Vocabulary.EOS
    hyps, agree = [], 0
    for k, i in enumerate(te):
        en, fr = pairs[i]
        src = src_vocab.encode(en)
        if k < 6:
            print(f"  {en!r}\n    -> ", end="", flush=True)
        ids = []
        for token in pair.greedy(src, bos, eos, max_len=2 * MAX_CHARS):
            ids.append(token)
            if k < 6:  # the output streamed token by token, as it is decoded
                print(tgt_vocab.decode([token]), end="", flush=True)
        if k < 6:
            print(f"\n    reference {fr!r}", flush=True)
        hyps.append(tgt_vocab.decode(ids))
        agree += ids == _torch_greedy(model, src, bos, eos, 2 * MAX_CHARS)
    refs = [pairs[i][1] for i in te]
    memory = {pairs[i][0]: pairs[i][1] for i in tr}
    recalled = [
        memory[(difflib.get_close_matches(pairs[i][0], memory, n=1, cutoff=0) or [""])[0]]
        if memory
        else ""
        for i in te
    ]
    rows = [
        ["GRU encoder-decoder (ONNX, greedy)", *scores(hyps, refs)],
        ["translation memory (closest English)", *scores(recalled, refs)],
        ["copy the English", *scores([pairs[i][0] for i in te], refs)],
    ]
    run.table(
        f"Held-out pairs ({len(te)}, English -> French, at most {MAX_CHARS} chars)",
        ["system", "exact match", "character error rate"],
        rows,
    )
    best = result.best_epoch if result.best_epoch is not None else len(result.history) - 1
    run.table(
        "Training",
        ["measure", "value"],
        [
            ["pairs train / held out", f"{len(tr)} / {len(te)}"],
            [
                "vocabulary English / French (characters + 4 specials)",
                f"{len(src_vocab)} / {len(tgt_vocab)}",
            ],
            ["epochs (best)", f"{len(result.history)} ({best + 1})"],
            ["best validation loss (nats/char)", result.best_val_loss],
            ["ONNX greedy == PyTorch greedy (pairs)", f"{agree} / {len(te)}"],
            ["train seconds", round(result.seconds, 1)],
        ],
    )
    assert agree == len(te), "ONNX and PyTorch greedy decoding disagree"
    run.record("exact_match", rows[0][1])
    run.record("cer", rows[0][2])
    run.record(
        "examples", [{"en": pairs[i][0], "fr": refs[k], "model": hyps[k]} for k, i in enumerate(te)]
    )

    plt = run.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bins = np.linspace(0, 1.5, 16)
    for (name, *_), hyp in zip(rows, (hyps, recalled, [pairs[i][0] for i in te])):
        cer = [min(edit_distance(h, r) / len(r), 1.5) for h, r in zip(hyp, refs)]
        ax.hist(cer, bins=bins, histtype="step", lw=1.8, label=name)
    ax.set_xlabel("character error rate per held-out pair (capped at 1.5)")
    ax.set_ylabel("pairs")
    ax.set_title("English -> French, Django UI strings")
    ax.legend()
    run.save_plot(fig, "06_translation.png")
    return run.finish()


def _torch_greedy(model, src: np.ndarray, bos: int, eos: int, max_len: int) -> list[int]:
    import torch

    with torch.inference_mode():
        state = model.encode(torch.from_numpy(src)[None])
        token, out = bos, []
        for _ in range(max_len):
            logits, state = model.decoder(torch.tensor([[token]]), state)
            token = int(logits[0, -1].argmax())
            if token == eos:
                break
            out.append(token)
    return out


if __name__ == "__main__":
    main()
