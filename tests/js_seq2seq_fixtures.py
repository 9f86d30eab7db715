"""Encoder-decoder fixtures for runtime-js/test/encoder-decoder.test.js.

Small text pairs (every cell, with and without attention) trained a few steps on reversing
their source, exported as ``edgeseq export`` writes them (decoder + ``.encoder.onnx``
beside it), and what Python's :class:`~edgeseq.runtime.EncoderDecoder` decodes from them:
greedy and beam ids (widths 1, 3 and 5, with and without a length penalty), the decoder's
state afterwards, sampled texts, and its refusals' messages. Called by
``tests/js_fixtures.py write``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CHARS = "abcdefg"
FEATURES = 3  # per frame, for the pair whose encoder takes float frames
MAX_SOURCE = 8
# (cell, attention): every cell plain and with Luong's general score, plus the other kinds
PAIRS = (
    ("gru", None), ("lstm", None), ("rnn", None),
    ("gru", "general"), ("lstm", "general"), ("rnn", "general"),
    ("lstm", "additive"), ("gru", "dot"),
)  # fmt: skip
SOURCES = ("abc", "gfedcba", "a", "bad", "cafe", "abcdefga", "ggg", "fab")
BEAMS = ((1, 0.0), (3, 0.0), (3, 0.8), (5, 0.0), (5, 2.0))
MAX_LEN = (12, 3)  # a long limit, and one that cuts hypotheses short
SAMPLING = (
    {"max_tokens": 12, "temperature": 0.0},
    {"max_tokens": 12, "temperature": 0.8, "top_k": 5, "seed": 3},
    {"max_tokens": 12, "temperature": 1.2, "top_p": 0.9, "seed": 11, "stop": "a"},
)


def _flat(a: Any) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _pair(cell: str, attention: str | None, path: Path, seed: int, frames: bool = False) -> None:
    """A pair trained to reverse its text source, or (``frames``) to spell the signs of its
    float frames ``[T, FEATURES]`` (an encoder without a vocabulary, as for audio)."""
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import Seq2Seq, SeqConfig
    from edgeseq.train.training import TrainConfig, fit_seq2seq
    from edgeseq.vocab import Vocabulary

    torch.manual_seed(seed)
    vocab = Vocabulary.from_text(CHARS)
    n = len(vocab)
    size = 8
    enc = SeqConfig(cell=cell, input_size=FEATURES if frames else 6, hidden_size=size,
                    output_size=size, vocab_size=None if frames else n)  # fmt: skip
    dec = SeqConfig(cell=cell, input_size=6, hidden_size=size, output_size=n, vocab_size=n,
                    task="translate")  # fmt: skip
    model = Seq2Seq(enc, dec, attention=attention)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, MAX_SOURCE + 1, 64)
    if frames:
        src = [rng.normal(size=(int(k), FEATURES)).astype(np.float32) for k in lengths]
        tgt = [np.r_[2, 4 + (s[:, 0] > 0) + 2 * (s[:, 1] > 0), 3] for s in src]
    else:
        src = [rng.integers(4, n, int(k)) for k in lengths]
        tgt = [np.r_[2, s[::-1], 3] for s in src]
    cfg = TrainConfig(
        epochs=8, batch_size=8, max_steps=60, lr=0.02, progress=False, val_fraction=0.0
    )
    fit_seq2seq(model, src, tgt, cfg)  # partly trained
    model.eval()
    prep = Preprocessing(vocab=vocab.to_list())
    export_model(model, path, max_source=MAX_SOURCE, preprocessing=prep,
                 source_preprocessing=None if frames else prep)  # fmt: skip


def frame_case(out: Path) -> dict[str, Any]:
    """A pair whose encoder takes float frames (general attention): greedy and beam ids on
    random sources, and the refusals of text and of a source longer than the memory."""
    from edgeseq.runtime import EncoderDecoder
    from edgeseq.runtime.generate import BOS, EOS

    path = out / "s2s-gru-frames.onnx"
    _pair("gru", "general", path, seed=21, frames=True)
    pair = EncoderDecoder(path)
    rng = np.random.default_rng(3)
    runs = []
    for k in (1, 3, 5, 8):
        x = rng.normal(size=(k, FEATURES)).astype(np.float32)
        src = {"frames": _flat(x), "shape": list(x.shape)}
        runs.append(_decoded(pair, pair.greedy(x, BOS, EOS, 12), **src, max_len=12, kind="greedy"))
        for width, alpha in BEAMS:
            ids = pair.beam(x, BOS, EOS, 12, width, length_penalty=alpha)
            runs.append(_decoded(pair, ids, **src, max_len=12, kind="beam", width=width,
                                 length_penalty=alpha))  # fmt: skip
    long = rng.normal(size=(MAX_SOURCE + 1, FEATURES)).astype(np.float32)
    refusals = {
        "text": _refused(pair.greedy, "abc", BOS, EOS, 12),
        "too_long": _refused(pair.greedy, long, BOS, EOS, 12),
    }
    return {"name": path.stem, "model": path.name, "bos": BOS, "eos": EOS, "runs": runs,
            "refusals": refusals, "long": _flat(long)}  # fmt: skip


def condition_case(out: Path) -> dict[str, Any]:
    """A one-to-many decoder (a condition vector through its init graph, as for
    captioning): greedy and beam ids for random conditions, and Python's refusals."""
    import warnings

    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import EncoderDecoder
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(4)
    cfg = SeqConfig(cell="lstm", input_size=5, hidden_size=8, output_size=9, vocab_size=9,
                    condition_size=4, topology="one_to_many", task="caption")  # fmt: skip
    path = out / "caption-lstm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(SeqModel(cfg).eval(), path)
    pair = EncoderDecoder(path)
    bos, eos = 2, 3
    rng = np.random.default_rng(5)
    runs = []
    for _ in range(4):
        cond = (rng.normal(size=4) * 3).astype(np.float32)
        src = {"condition": _flat(cond)}
        runs.append(
            _decoded(pair, pair.greedy(cond, bos, eos, 10), **src, max_len=10, kind="greedy")
        )
        for width, alpha in BEAMS:
            ids = pair.beam(cond, bos, eos, 10, width, length_penalty=alpha)
            runs.append(_decoded(pair, ids, **src, max_len=10, kind="beam", width=width,
                                 length_penalty=alpha))  # fmt: skip
    refusals = {
        "inexact": _refused(pair.greedy, np.array([1, 2, 2**24 + 1, 4]), bos, eos, 10),
        "size": _refused(pair.greedy, np.zeros(5, np.float32), bos, eos, 10),
    }
    return {"name": path.stem, "model": path.name, "bos": bos, "eos": eos, "runs": runs,
            "refusals": refusals}  # fmt: skip


def _decoded(pair: Any, ids: Any, **fields: Any) -> dict[str, Any]:
    """A run's record: what was asked, the ids, and the decoder's state afterwards."""
    got = [int(t) for t in ids]  # runs the decoder
    d = pair.decoder
    state = {k: _flat(v) for k, v in d.state.items()}
    return {**fields, "ids": got, "state": state, "frames_seen": d.frames_seen}


def _refused(call: Any, *args: Any, **kw: Any) -> str:
    from edgeseq.errors import InputError

    try:
        list(call(*args, **kw))
    except InputError as exc:
        return str(exc)
    raise RuntimeError(
        f"Python's EncoderDecoder accepted {args} {kw}; the fixtures expect a refusal"
    )


def _case(path: Path, attention: str | None) -> dict[str, Any]:
    from edgeseq.runtime import EncoderDecoder
    from edgeseq.runtime.generate import BOS, EOS

    pair = EncoderDecoder(path)
    runs = []
    for src in SOURCES:
        for n in MAX_LEN:
            ids = pair.greedy(src, BOS, EOS, n)
            runs.append(_decoded(pair, ids, source=src, max_len=n, kind="greedy"))
            for width, alpha in BEAMS:
                ids = pair.beam(src, BOS, EOS, n, width, length_penalty=alpha)
                runs.append(_decoded(pair, ids, source=src, max_len=n, kind="beam", width=width,
                                     length_penalty=alpha))  # fmt: skip
    for unknown in ("unk", "skip"):
        ids = pair.greedy("ab?c", BOS, EOS, 12, unknown=unknown)
        runs.append(_decoded(pair, ids, source="ab?c", max_len=12, kind="greedy", unknown=unknown))
    texts = [
        {**opts, "source": src, "text": "".join(pair.generate(src, **opts))}
        for src in ("abc", "gfedcba", "cafe")
        for opts in SAMPLING
    ]
    refusals = {"unknown": _refused(pair.greedy, "ab?c\u2603", BOS, EOS, 12)}
    if attention is not None:  # one token more than the memory holds
        refusals["too_long"] = _refused(pair.greedy, "abcdefgab", BOS, EOS, 12)
    refusals["width"] = _refused(pair.beam, "abc", BOS, EOS, 12, 0)
    refusals["max_len"] = _refused(pair.beam, "abc", BOS, EOS, -1, 3)
    refusals["length_penalty"] = _refused(pair.beam, "abc", BOS, EOS, 12, 3, length_penalty=-0.5)
    return {"bos": BOS, "eos": EOS, "runs": runs, "texts": texts, "refusals": refusals}


class _Table:
    """A decoder whose logits come from a table by (step, last token), with many exact
    ties: what Python's beam ranks, for the JavaScript beam to rank alike."""

    def __init__(self, logits: np.ndarray) -> None:
        self.logits, self.at = logits, (0, 0)

    def step(self, token: Any) -> np.ndarray:
        n, _ = self.at
        self.at = (n + 1, int(token))
        return self.logits[min(n, len(self.logits) - 1), int(token)]

    def snapshot(self) -> tuple[int, int]:
        return self.at

    def restore(self, at: tuple[int, int]) -> None:
        self.at = at


def ties() -> list[dict[str, Any]]:
    """Python's beam over tables of tied logits (steps x tokens x tokens, values in
    {-1, 0, 0.5}): ids for widths 1 to 4, with and without a length penalty."""
    from edgeseq.runtime._beam import beam_tokens

    rng = np.random.default_rng(7)
    cases = []
    for _ in range(12):
        vocab = int(rng.integers(4, 7))
        logits = rng.choice(np.float32([-1, 0, 0.5]), size=(6, vocab, vocab)).astype(np.float32)
        eos = int(rng.integers(0, vocab))
        for width in (1, 2, 3, 4):
            for alpha in (0.0, 0.8):
                ids = [int(t) for t in beam_tokens(_Table(logits), 0, eos, 6, width, alpha)]
                case = {"logits": _flat(logits), "shape": list(logits.shape), "eos": eos}
                cases.append({**case, "width": width, "length_penalty": alpha, "ids": ids})
    return cases


def write(out: Path) -> list[dict[str, Any]]:
    """Export the pairs into ``out``; returns their manifest entries."""
    cases = []
    for k, (cell, attention) in enumerate(PAIRS):
        name = f"s2s-{cell}-{attention or 'plain'}"
        path = out / f"{name}.onnx"
        _pair(cell, attention, path, seed=k)
        cases.append({"name": name, "model": path.name, "cell": cell, "attention": attention,
                      "max_source": MAX_SOURCE, **_case(path, attention)})  # fmt: skip
    return cases
