"""Beam search on the device: EncoderDecoder.beam over the exported decoder finds what an
exhaustive search finds when the beam is wide enough (by total log-probability, or divided
by GNMT's length penalty), equals greedy at width 1 and the PyTorch batch beam of the
examples, streams the tokens its hypotheses agree on, and refuses bad calls without
touching the decoder's state."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.errors import InputError
from edgeseq.exporters import export_model
from edgeseq.runtime import EncoderDecoder
from edgeseq.runtime._beam import beam_tokens
from edgeseq.train.models import Seq2Seq, SeqConfig, SeqModel
from edgeseq.train.training import TrainConfig, fit_seq2seq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

VOCAB, BOS, EOS = 7, 2, 3  # 0 pad, 1 unk, 2 bos, 3 eos, then 4, 5, 6


def _pair(cell: str, attention: str | None, tmp_path: Path) -> tuple[Seq2Seq, EncoderDecoder]:
    torch.manual_seed(0)
    enc = SeqConfig(cell=cell, input_size=4, hidden_size=8, output_size=8, vocab_size=VOCAB)
    dec = SeqConfig(cell=cell, input_size=4, hidden_size=8, output_size=VOCAB, vocab_size=VOCAB,
                    task="translate")  # fmt: skip
    model = Seq2Seq(enc, dec, attention=attention)
    rng = np.random.default_rng(0)
    src = [rng.integers(4, VOCAB, int(k)) for k in rng.integers(2, 6, 32)]
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=4, progress=False, val_fraction=0.0)
    fit_seq2seq(
        model, src, [np.r_[BOS, s[::-1], EOS] for s in src], cfg
    )  # half-trained: ties are rare
    model.eval()
    path = tmp_path / f"{cell}-{attention}.onnx"
    export_model(model, path, max_source=8)
    return model, EncoderDecoder(path)


def _logp(model: Seq2Seq, src: np.ndarray, prefix: list[int]) -> np.ndarray:
    """log P(next token | source, prefix) from PyTorch, teacher-forced."""
    with torch.no_grad():
        state = model.encode(torch.from_numpy(src)[None])
        logits = model.decoder(torch.tensor([[BOS, *prefix]]), state)[0][0, -1]
        return torch.log_softmax(logits.double(), -1).numpy()


def _exhaustive(model: Seq2Seq, src: np.ndarray, max_len: int, alpha: float = 0.0) -> list[int]:
    """The most probable output of at most ``max_len`` tokens: every sequence scored (an
    output ends at EOS, or is cut at max_len as the beam cuts it), its log-probability
    divided by ((5 + tokens scored, EOS included) / 6) ** alpha."""
    best, best_score = None, -np.inf
    for n in range(max_len + 1):
        for body in itertools.product(range(VOCAB), repeat=n):
            if EOS in body:
                continue
            score = sum(_logp(model, src, list(body[:i]))[t] for i, t in enumerate(body))
            if n < max_len:
                score += _logp(model, src, list(body))[EOS]
            score /= ((5 + min(n + 1, max_len)) / 6) ** alpha
            if score > best_score:
                best, best_score = list(body), score
    assert best is not None
    return best


@pytest.mark.parametrize(("cell", "attention"), [("gru", "general"), ("lstm", None)])
def test_wide_beam_is_exhaustive_search_and_width_one_is_greedy(cell, attention, tmp_path):
    model, pair = _pair(cell, attention, tmp_path)
    rng = np.random.default_rng(1)
    for _ in range(3):
        src = rng.integers(4, VOCAB, int(rng.integers(2, 6)))
        assert list(pair.beam(src, BOS, EOS, 3, width=VOCAB**3)) == _exhaustive(model, src, 3)
        assert list(pair.beam(src, BOS, EOS, 10, width=1)) == list(pair.greedy(src, BOS, EOS, 10))
        # alpha = 0 is the plain total, as the default
        plain = pair.beam(src, BOS, EOS, 10, width=3, length_penalty=0.0)
        assert list(plain) == list(pair.beam(src, BOS, EOS, 10, width=3))


@pytest.mark.parametrize(("cell", "attention"), [("gru", "general"), ("lstm", None)])
@pytest.mark.parametrize("alpha", [0.6, 2.0])
def test_wide_beam_with_length_penalty_is_exhaustive_search(cell, attention, alpha, tmp_path):
    """At full width the beam ranks every output by log-probability / length penalty, as
    brute force does (both sides compute their own penalty)."""
    model, pair = _pair(cell, attention, tmp_path)
    rng = np.random.default_rng(1)
    for _ in range(3):
        src = rng.integers(4, VOCAB, int(rng.integers(2, 6)))
        got = list(pair.beam(src, BOS, EOS, 3, width=VOCAB**3, length_penalty=alpha))
        assert got == _exhaustive(model, src, 3, alpha)


def test_length_penalty_lets_a_longer_output_win() -> None:
    """Ending at once costs log 0.5; 4 then 5 then EOS costs log 0.5 + 2 log 0.9. By total
    log-probability the empty output wins; divided by ((5 + length) / 6) ** 1 the longer
    one does (-0.693 / 1 against -0.904 / (8 / 6) = -0.678)."""

    class Two:
        last = BOS

        def step(self, token: np.int64) -> np.ndarray:
            self.last = int(token)
            nxt = {BOS: {EOS: 0.5, 4: 0.5}, 4: {5: 0.9, 6: 0.1}, 5: {EOS: 0.9, 6: 0.1}}.get(
                self.last, {EOS: 1}
            )
            out = np.full(VOCAB, 1e-6, np.float32)
            for t, p in nxt.items():
                out[t] = p
            return np.log(out / out.sum())

        def snapshot(self) -> int:
            return self.last

        def restore(self, last: int) -> None:
            self.last = last

    assert list(beam_tokens(Two(), BOS, EOS, 6, width=3)) == []
    assert list(beam_tokens(Two(), BOS, EOS, 6, width=3, length_penalty=0.5)) == []
    assert list(beam_tokens(Two(), BOS, EOS, 6, width=3, length_penalty=1.0)) == [4, 5]


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_equals_the_pytorch_batch_beam(cell: str, tmp_path: Path) -> None:
    from _seq2seq import beam_batch

    model, pair = _pair(cell, "general", tmp_path)
    rng = np.random.default_rng(2)
    sources = [rng.integers(4, VOCAB, int(k)) for k in rng.integers(1, 9, 12)]
    for width, alpha in ((2, 0.0), (4, 0.0), (3, 1.0)):
        ref = beam_batch(model, sources, 12, beam=width, length_penalty=alpha)
        got = [list(pair.beam(s, BOS, EOS, 12, width, length_penalty=alpha)) for s in sources]
        assert got == ref, (width, alpha)


def test_the_decoder_holds_the_best_output_afterwards(tmp_path: Path) -> None:
    _, pair = _pair("gru", "general", tmp_path)
    src = np.array([4, 5, 6, 4])
    best = list(pair.beam(src, BOS, EOS, 12, width=3))
    after = pair.decoder.state
    pair.start(src)
    for token in [BOS, *best]:
        pair.decoder.step(np.int64(token))
    for name, value in pair.decoder.state.items():
        np.testing.assert_array_equal(after[name], value)


class _Scripted:
    """A decoder whose next-token log-probabilities depend only on the last token: every
    hypothesis agrees on token 4 first, then they differ."""

    def __init__(self) -> None:
        self.last, self.steps = BOS, 0

    def step(self, token: np.int64) -> np.ndarray:
        self.last, self.steps = int(token), self.steps + 1
        table = {BOS: [4], 4: [5, 6], 5: [6, EOS], 6: [5, EOS]}.get(self.last, [EOS])
        out = np.full(VOCAB, -9.0, np.float32)
        out[table] = np.linspace(1.0, 0.5, len(table))
        return out

    def snapshot(self) -> int:
        return self.last

    def restore(self, last: int) -> None:
        self.last = last


def test_agreed_tokens_stream_before_the_search_ends() -> None:
    decoder = _Scripted()
    tokens = beam_tokens(decoder, BOS, EOS, max_len=6, width=2)
    first = next(tokens)
    steps_at_first = decoder.steps
    rest = list(tokens)
    assert first == 4 and steps_at_first < decoder.steps and rest and EOS not in rest


def test_bad_calls_are_refused_and_change_nothing(tmp_path: Path) -> None:
    _, pair = _pair("gru", "general", tmp_path)
    pair.start(np.array([4, 5]))
    before = pair.decoder.state
    for width in (0, -1, 2.5, "3", True, None):
        with pytest.raises(InputError, match="beam width must be a whole number >= 1"):
            pair.beam(np.array([4, 5]), BOS, EOS, 5, width=width)
    for max_len in (-1, 4.5, "5"):
        with pytest.raises(InputError, match="max_len must be a whole number >= 0"):
            pair.beam(np.array([4, 5]), BOS, EOS, max_len, width=2)
    with pytest.raises(InputError, match="memory holds 1 to 8 rows"):
        list(pair.beam(np.arange(4, 13) % 3 + 4, BOS, EOS, 5, width=2))
    for alpha in (-0.5, float("nan"), float("inf"), "0.6", True, None):
        with pytest.raises(InputError, match=r"length_penalty must be a finite number >= 0"):
            pair.beam(np.array([6, 6, 6]), BOS, EOS, 5, width=2, length_penalty=alpha)
    for name, value in pair.decoder.state.items():
        np.testing.assert_array_equal(before[name], value)
    np_ints = list(pair.beam(np.array([4, 5]), BOS, EOS, np.int64(3), width=np.int64(2)))
    assert np_ints == list(pair.beam(np.array([4, 5]), BOS, EOS, 3, width=2))


def test_each_decoding_starts_a_new_decoder_sequence(tmp_path: Path) -> None:
    """After a beam search the decoder holds the best output's state; the next start() (by
    greedy, beam or itself) counts frames from 0 again, and a source the attention memory
    cannot hold changes neither the state nor the count."""
    _, pair = _pair("gru", "general", tmp_path)
    out = list(pair.beam(np.array([4, 5, 6]), BOS, EOS, 6, width=3))
    assert pair.decoder.frames_seen >= 1
    kept = pair.decoder.snapshot()
    for call in (
        lambda: list(pair.greedy(np.arange(4, 13) % 3 + 4, BOS, EOS, 5)),
        lambda: list(pair.beam(np.arange(4, 13) % 3 + 4, BOS, EOS, 5, width=2)),
        lambda: pair.start(np.arange(4, 13) % 3 + 4),
    ):
        with pytest.raises(InputError, match="memory holds 1 to 8 rows"):
            call()
        assert pair.decoder.frames_seen == kept.frames_seen
        for name, value in pair.decoder.state.items():
            np.testing.assert_array_equal(kept.states[name], value)
    pair.start(np.array([4, 5, 6]))
    assert pair.decoder.frames_seen == 0
    assert list(pair.beam(np.array([4, 5, 6]), BOS, EOS, 6, width=3)) == out
    greedy = list(pair.greedy(np.array([4, 5, 6]), BOS, EOS, 6))
    assert pair.decoder.frames_seen == min(len(greedy) + 1, 6)


def test_cli_generate_beam(tmp_path: Path) -> None:
    """`edgeseq generate --beam N` on a text pair prints what EncoderDecoder.beam finds."""
    torch.manual_seed(0)
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c"]
    from edgeseq.contract import Preprocessing

    model, _ = _pair("gru", "general", tmp_path)
    path = tmp_path / "text.onnx"
    export_model(
        model, path, max_source=8, preprocessing=Preprocessing(vocab=vocab),
        source_preprocessing=Preprocessing(vocab=vocab),
    )  # fmt: skip
    want = "".join(vocab[t] for t in EncoderDecoder(path).beam("abca", BOS, EOS, 20, width=3))
    got = CliRunner().invoke(main, ["generate", str(path), "--source", "abca", "--beam", "3"])
    assert got.exit_code == 0, got.output
    assert got.output == want + "\n"
    ids = EncoderDecoder(path).beam("abca", BOS, EOS, 20, width=3, length_penalty=1.5)
    longer = ["generate", str(path), "--source", "abca", "--beam", "3", "--length-penalty", "1.5"]
    got = CliRunner().invoke(main, longer)
    assert got.exit_code == 0 and got.output == "".join(vocab[t] for t in ids) + "\n"
    for bad, says in (
        (["--length-penalty", "0.6"], "add --beam N"),  # without --beam
        (["--beam", "3", "--length-penalty", "-1"], "x>=0"),
        (["--beam", "3", "--length-penalty", "nan"], "length_penalty must be a finite number"),
    ):
        got = CliRunner().invoke(main, ["generate", str(path), "--source", "abca", *bad])
        assert got.exit_code != 0 and says in got.output, (bad, got.output)
        assert len(got.output.strip().splitlines()) <= 3, got.output  # one line (+ usage)
    lm = SeqModel(SeqConfig(cell="gru", input_size=4, hidden_size=8, output_size=VOCAB,
                            vocab_size=VOCAB, task="generate")).eval()  # fmt: skip
    export_model(lm, tmp_path / "lm.onnx", preprocessing=Preprocessing(vocab=vocab))
    bad = CliRunner().invoke(
        main, ["generate", str(tmp_path / "lm.onnx"), "-p", "ab", "--beam", "3"]
    )
    assert bad.exit_code != 0 and "--beam is for encoder-decoder models" in bad.output
    for extra in (["-t", "0.5"], ["--top-k", "2"], ["--seed", "1"], ["--stop", "a"]):
        mixed = CliRunner().invoke(
            main, ["generate", str(path), "--source", "abca", "--beam", "3", *extra]
        )
        assert mixed.exit_code == 2 and "takes no sampling options" in mixed.output, extra


@pytest.mark.parametrize("attention", ["general", None])
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_batched_beam_equals_one_call_per_hypothesis(cell: str, attention, tmp_path) -> None:
    """Where the contract allows a batch, the hypotheses can run as rows of one decoder
    call per step. Where a probe finds those rows computed bit for bit as batch 1 computes
    them, the beam takes that path by itself, and its tokens, the decoder's state and
    frames_seen afterwards are exactly the batch-1 path's; elsewhere it keeps the batch-1
    path (forced, the rows give the same tokens and states within float rounding)."""
    from edgeseq.runtime._beam_rows import batchable, rows_agree

    _, pair = _pair(cell, attention, tmp_path)
    decoder = pair.decoder
    assert batchable(decoder) and not batchable(_Scripted())
    run, calls = decoder.engine.run, []
    decoder.engine.run = lambda *a: calls.append(a[0].shape) or run(*a)  # type: ignore[method-assign]
    rng = np.random.default_rng(3)
    for width, alpha in ((2, 0.0), (5, 0.0), (4, 1.0)):
        pair.start(np.array([4, 5, 6]))
        exact = rows_agree(decoder, width, (BOS, EOS))
        print(f"{cell}-{attention} width {width}: rows {'agree' if exact else 'differ'}")
        for src in (rng.integers(4, VOCAB, int(k)) for k in rng.integers(1, 9, 4)):
            found = {}
            for batched in (None, True, False):
                pair.start(src)
                calls.clear()
                ids = list(beam_tokens(decoder, BOS, EOS, 12, width, alpha, batched=batched))
                found[batched] = ids, decoder.state, decoder.frames_seen, list(calls)
            ids1, state1, seen1, _ = found[False]
            for batched in (None, True):
                ids, state, seen, batch_calls = found[batched]
                assert ids == ids1 and seen == seen1, (batched, width, alpha, src)
                for name, value in state1.items():
                    if batched is None or exact:  # the path taken by itself: bit for bit
                        np.testing.assert_array_equal(state[name], value)
                    else:
                        np.testing.assert_allclose(state[name], value, rtol=1e-5, atol=1e-6)
                if batched or exact:  # after BOS (one row), each step is one call of width rows
                    assert 2 <= len(batch_calls) <= 13
                    assert all(s[0] == width for s in batch_calls[1:]), batch_calls
