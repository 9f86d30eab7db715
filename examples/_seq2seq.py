"""What the encoder-decoder examples (06 translation, 11 pronunciation) share: the GRU
encoder-decoder they build, training it with and without attention, its export with the
parity check, scores, the nearest-neighbour memory baseline, batched greedy decoding in
PyTorch, the comparison against the baselines and the attention-weights panel of their
plots."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

METRICS = ("CER", "exact match", "BLEU", "chrF")
LOWER_IS_BETTER = {"CER", "PER"}


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance (insert, delete, substitute, each cost 1) of two strings or
    two token lists."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def scores(hyps: Sequence[Any], refs: Sequence[Any], *, chrf: bool = True) -> list[float]:
    """[error rate, exact match, BLEU(, chrF)] of hypotheses against references.

    Strings are scored by character (CER) and BLEU/chrF on sacrebleu's own tokens; token
    lists (phonemes) by token (PER), with BLEU over the space-joined tokens, unsplit.
    The error rate is edits / reference tokens, summed over the corpus.
    """
    import sacrebleu

    err = sum(edit_distance(h, r) for h, r in zip(hyps, refs)) / sum(len(r) for r in refs)
    exact = float(np.mean([list(h) == list(r) for h, r in zip(hyps, refs)]))
    tokens = bool(refs) and not isinstance(refs[0], str)
    join = (lambda x: " ".join(x)) if tokens else (lambda x: x)
    h, r = [join(x) for x in hyps], [join(x) for x in refs]
    bleu = sacrebleu.corpus_bleu(h, [r], tokenize="none" if tokens else "13a").score
    out = [round(err, 4), round(exact, 4), round(bleu, 2)]
    if chrf:
        out.append(round(sacrebleu.corpus_chrf(h, [r]).score, 2))
    return out


def compare(rows: Sequence[Sequence[Any]], metrics: Sequence[str]) -> tuple[dict, dict]:
    """Whether ``rows[0]`` (the attention model) beats the best of ``rows[1:]`` on each
    metric, and by how much (absolute difference to the best baseline)."""
    beats, margins = {}, {}
    for i, metric in enumerate(metrics, 1):
        lower = metric in LOWER_IS_BETTER
        best = (min if lower else max)(r[i] for r in rows[1:])
        beats[metric] = rows[0][i] < best if lower else rows[0][i] > best
        margins[metric] = round(abs(rows[0][i] - best), 4)
    return beats, margins


def beam_options(parser: Any, length_penalty: float, why: str = "") -> None:
    """``--beam`` (width of the exported attention model's beam search; 1: off) and
    ``--length-penalty`` (GNMT's alpha, default ``length_penalty``; ``why`` says why that
    default) on an example's ``argparse`` parser."""
    parser.add_argument(
        "--beam",
        type=int,
        default=5,
        help="also decode the exported attention model with a beam this wide (1: off)",
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=length_penalty,
        help="rank the beam's hypotheses by log-probability / ((5 + length) / 6) ** this "
        f"(GNMT's alpha; 0: total log-probability, which favours short outputs{why})",
    )


def memory_baseline(
    sources: Sequence[str], outputs: Sequence[Any], queries: Sequence[str] | None = None
) -> list[Any]:
    """The output of the most similar training source for each query, by the device's
    :class:`edgeseq.runtime.TranslationMemory`: character 1-3-gram TF-IDF cosine picks the
    ten nearest, difflib's ratio the best of those. Without ``queries`` each source is its
    own query and may not match itself (leave one out: what the memory would give a
    training pair it had not stored)."""
    from edgeseq.runtime import TranslationMemory

    memory = TranslationMemory(sources, outputs)
    return memory.leave_one_out() if queries is None else memory.lookup_batch(queries)


def sklearn_memory(
    sources: Sequence[str],
    outputs: Sequence[Any],
    queries: Sequence[str] | None = None,
    chunk: int = 512,
) -> list[Any]:
    """:func:`memory_baseline` computed with scikit-learn's TfidfVectorizer (the reference
    the device's memory is checked against), with the same tie rule: the ten candidates by
    cosine, equal cosines by lower index; the best ratio, equal ratios to the earlier."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    known = vec.fit_transform(sources).T.tocsr()  # (n-grams, train)
    leave_one_out = queries is None
    queries = sources if queries is None else queries
    out = []
    for k in range(0, len(queries), chunk):  # (chunk, train) dense similarities at a time
        part = queries[k : k + chunk]
        sims = (vec.transform(part) @ known).toarray()
        if leave_one_out:
            sims[np.arange(len(part)), np.arange(k, k + len(part))] = -np.inf
        near = np.argsort(-sims, axis=1, kind="stable")[:, :10]
        for i, (q, row) in enumerate(zip(part, near)):
            row = [j for j in row if sims[i, j] > -np.inf]
            best = max(row, key=lambda j: difflib.SequenceMatcher(None, q, sources[j]).ratio())
            out.append(outputs[best])
    return out


def greedy_batch(model: Any, sources: list[np.ndarray], max_len: int, batch: int = 128) -> list:
    """Greedy decoding in PyTorch, many sources at once: token ids without BOS/EOS."""
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
            ended = torch.zeros(len(rows), dtype=torch.bool)
            steps = []
            for _ in range(max_len):
                logits, state = model.decoder(token, state)
                token = logits[:, -1].argmax(-1, keepdim=True)
                steps.append(token)
                ended |= token[:, 0] == Vocabulary.EOS
                if bool(ended.all()):  # every row has ended: later steps are cut off anyway
                    break
            for ids in torch.cat(steps, 1).tolist():
                result.append(ids[: ids.index(Vocabulary.EOS)] if Vocabulary.EOS in ids else ids)
    return result


def beam_batch(
    model: Any,
    sources: list[np.ndarray],
    max_len: int,
    beam: int = 5,
    batch: int = 64,
    length_penalty: float = 0.0,
) -> list:
    """Beam search in PyTorch, many sources at once: the ``beam`` best partial outputs of
    each source are kept by total log-probability divided by GNMT's length penalty
    ``((5 + length) / 6) ** length_penalty`` (length: tokens scored, EOS included; 0: the
    total itself), as ``EncoderDecoder.beam`` ranks them; returns the best finished
    output's token ids (without BOS/EOS). ``beam=1`` is greedy decoding."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    from edgeseq.runtime._beam import check_beam_options, length_penalties
    from edgeseq.train.data import Vocabulary

    alpha = check_beam_options(beam, max_len, length_penalty)
    lp = torch.from_numpy(length_penalties(alpha, max_len))  # the device beam's divisors
    eos, result = Vocabulary.EOS, []
    attention = getattr(model, "attention", None) is not None
    model.eval()
    with torch.inference_mode():
        for k in range(0, len(sources), batch):
            rows = [torch.from_numpy(s) for s in sources[k : k + batch]]
            n = len(rows)
            state = model.encode(
                pad_sequence(rows, batch_first=True), torch.tensor([len(r) for r in rows])
            )
            state = _pick(state, torch.arange(n).repeat_interleave(beam), attention)
            score = torch.full((n, beam), -math.inf)
            score[:, 0] = 0.0  # one live hypothesis per source at the start
            rank = score.clone()  # score / length penalty: what the beam keeps by
            token = torch.full((n * beam, 1), Vocabulary.BOS)
            done = torch.zeros(n * beam, dtype=torch.bool)
            length = torch.zeros(n * beam, dtype=torch.long)  # tokens scored, EOS included
            history = torch.zeros((n * beam, 0), dtype=torch.long)
            for step in range(max_len):
                logits, state = model.decoder(token, state)
                logp = torch.log_softmax(logits[:, -1].float(), -1)  # (n * beam, vocab)
                logp[done] = -math.inf
                logp[done, eos] = 0.0  # a finished hypothesis only stays finished, for free
                total = score.reshape(-1, 1) + logp  # (n * beam, vocab)
                grown = torch.where(done, length, step + 1)  # a finished one keeps its length
                ranks = (total / lp[grown][:, None]).reshape(n, -1)  # (n, beam * vocab)
                rank, flat = ranks.topk(beam, dim=1)
                score = total.reshape(n, -1).gather(1, flat)
                parent = (torch.arange(n)[:, None] * beam + flat // logp.shape[1]).reshape(-1)
                token = (flat % logp.shape[1]).reshape(-1, 1)
                state = _pick(state, parent, attention)
                history = torch.cat([history[parent], token], 1)
                length = grown[parent]
                done = done[parent] | (token[:, 0] == eos)
                if bool(done.all()):
                    break
            best = rank.argmax(1) + torch.arange(n) * beam
            for ids in history[best].tolist():
                result.append(ids[: ids.index(eos)] if eos in ids else ids)
    return result


def _pick(state: tuple, rows: Any, attention: bool) -> tuple:
    """The decoder state of ``rows``: recurrent parts are (layers, batch, hidden); an
    attention state ends with its memory (batch, S, M) and mask (batch, S)."""
    rnn = state[:-2] if attention else state
    out = tuple(h[:, rows] for h in rnn)
    return out + tuple(m[rows] for m in state[-2:]) if attention else out


def attention_panel(
    ax: Any,
    model: Any,
    src_ids: np.ndarray,
    out_ids: Sequence[int],
    src_labels: Sequence[str],
    out_labels: Sequence[str],
    title: str,
    axes_names: tuple[str, str],
) -> None:
    """Draw the attention weights ``(output step, source position)`` of one decoded
    output on ``ax``: the decoder re-reads its own greedy output with teacher forcing."""
    import torch

    from edgeseq.train.data import Vocabulary

    tokens = torch.tensor([[Vocabulary.BOS, *out_ids]])
    with torch.inference_mode():
        *rnn, memory, mask = model.encode(torch.from_numpy(src_ids)[None])
        _, _, weights = model.decoder.attend(tokens, memory, mask, tuple(rnn))
    ax.imshow(weights[0, : len(out_labels) + 1].numpy(), cmap="Greys", aspect="auto")
    ax.set_xticks(range(len(src_labels)), list(src_labels), fontsize=7)
    ax.set_yticks(range(len(out_labels) + 1), [*out_labels, "<eos>"], fontsize=7)
    ax.grid(False)
    ax.set_title(title[:60], fontsize=8)
    ax.set_xlabel(axes_names[0])
    ax.set_ylabel(axes_names[1])


def scores_panel(ax: Any, rows: Sequence[Sequence[Any]], error: str, title: str) -> None:
    """Bars of each system's error rate (%), exact match (%) and BLEU
    (rows: [name, error rate, exact match, BLEU, ...])."""
    names = [r[0].split(" (")[0] + (", beam" if "beam" in r[0] else "") for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.27, [r[1] * 100 for r in rows], 0.27, label=f"{error} %")
    ax.bar(x, [r[2] * 100 for r in rows], 0.27, label="exact %")
    ax.bar(x + 0.27, [r[3] for r in rows], 0.27, label="BLEU")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)


def stream_decode(
    pair: Any,
    sources: Sequence[np.ndarray],
    max_len: int,
    show: Callable[[int, int | None], None] | None = None,
) -> list[list[int]]:
    """Greedy decoding through the exported pair (``EncoderDecoder``), token by token;
    ``show(k, token)`` sees each token of source ``k`` as it is decoded (None at the end)."""
    from edgeseq.train.data import Vocabulary

    out = []
    for k, s in enumerate(sources):
        ids = []
        for token in pair.greedy(s, Vocabulary.BOS, Vocabulary.EOS, max_len=max_len):
            ids.append(token)
            if show is not None:
                show(k, token)
        if show is not None:
            show(k, None)
        out.append(ids)
    return out


def gru_pair_builder(
    src_size: int, tgt_size: int, hidden: int, embed: int, seed: int, dropout: float = 0.0
) -> Callable[[str | None], Any]:
    """A function ``build(attention)`` that returns a fresh, seeded GRU encoder-decoder
    (:class:`edgeseq.train.models.Seq2Seq`) over ``src_size`` source and ``tgt_size``
    target tokens, with ``attention`` ("general", ...) or without (None). ``dropout``
    (while training) is on both GRUs' inputs, the decoder's output and the attention's
    memory (the encoder's outputs)."""
    import torch

    from edgeseq.train.models import Seq2Seq, SeqConfig

    def build(attention: str | None) -> Seq2Seq:
        torch.manual_seed(seed)
        enc = SeqConfig(
            cell="gru", input_size=embed, hidden_size=hidden, output_size=hidden,
            vocab_size=src_size, task="translate", input_dropout=dropout,
        )  # fmt: skip
        dec = SeqConfig(
            cell="gru", input_size=embed, hidden_size=hidden, output_size=tgt_size,
            vocab_size=tgt_size, task="translate", input_dropout=dropout,
            output_dropout=dropout,
        )  # fmt: skip
        return Seq2Seq(enc, dec, attention=attention, memory_dropout=dropout if attention else 0.0)

    return build


def train_with_and_without_attention(
    run: Any, build: Callable[[str | None], Any], train: Any, data: tuple, stem: str, key: str
) -> tuple[dict, dict]:
    """Train (or, with ``--reuse``, reload) ``build("general")`` and ``build(None)`` on
    ``data = (sources, targets)``; saved as ``{stem}-general.pt`` / ``{stem}-plain.pt``
    under the run's folder, reused only when ``f"{attention} {key}"`` matches.
    Returns ``({"attention": model, "no attention": model}, fits)``."""
    from _common import keep, reuse

    from edgeseq.train.training import fit_seq2seq

    models, fits = {}, {}
    for name, attention in (("attention", "general"), ("no attention", None)):
        print(f"\ntraining the GRU encoder-decoder with {name}", flush=True)
        models[name] = build(attention)
        saved = run.path(f"{stem}-{attention or 'plain'}.pt")
        tag = f"{attention} {key}"
        fits[name] = reuse(run, saved, models[name], tag)
        if fits[name] is None:
            fits[name] = fit_seq2seq(models[name], *data, train)
            keep(saved, models[name], tag, fits[name])
    return models, fits


def export_checked(
    run: Any, model: Any, path: Any, vocabs: tuple, max_source: int, pair: tuple[str, str]
) -> Any:
    """Export ``model`` (vocabularies ``(source, target)`` recorded in the contract), open
    it as :class:`edgeseq.runtime.EncoderDecoder` and check that its encoder and its
    teacher-forced decoder stream the example ``pair = (source text, target text)`` as
    PyTorch computes it. Returns the opened pair."""
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import EncoderDecoder

    src_vocab, tgt_vocab = vocabs
    export_model(
        model,
        path,
        preprocessing=Preprocessing(vocab=tgt_vocab.to_list()),
        source_preprocessing=Preprocessing(vocab=src_vocab.to_list()),
        max_source=max_source,
    )
    opened = EncoderDecoder(path, threads=1)
    src, tgt_in = src_vocab.encode(pair[0]), tgt_vocab.encode(pair[1], bos=True)
    with torch.inference_mode():
        state = model.encode(torch.from_numpy(src)[None])
        ref_enc = model.encoder(torch.from_numpy(src)[None])[0][0].numpy()
        ref_dec = model.decoder(torch.from_numpy(tgt_in)[None], state)[0][0].numpy()
    run.parity("encoder", opened.encoder, src, reference=ref_enc)
    run.parity(
        "attention decoder, teacher-forced, memory from the encoder",
        opened.decoder,
        tgt_in,
        reference=ref_dec,
        begin=lambda: opened.start(src),
    )
    return opened
