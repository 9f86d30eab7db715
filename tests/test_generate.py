"""Text generation: deterministic per seed, sampling rules, stop strings, the CLI, and
encoder-decoder (translation) models."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from _models import zoo
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.errors import InputError
from edgeseq.runtime import (
    EncoderDecoder,
    Sampling,
    StreamingPredictor,
    encode_prompt,
    sample_token,
)
from edgeseq.train.data import Vocabulary


@pytest.fixture(scope="module")
def lm() -> StreamingPredictor:
    return StreamingPredictor(zoo.get("char_lm"))


def _text(lm: StreamingPredictor, **kw: object) -> str:
    return "".join(lm.generate("the ", **kw))  # type: ignore[arg-type]


def test_deterministic_per_seed(lm: StreamingPredictor) -> None:
    a = _text(lm, max_tokens=40, seed=7)
    assert a == _text(lm, max_tokens=40, seed=7)
    others = {_text(lm, max_tokens=40, seed=s) for s in range(8)}
    assert len(others) > 1  # seeds matter
    pieces = list(lm.generate("the ", max_tokens=40, seed=7))
    assert "".join(pieces) == a and all(len(p) == 1 for p in pieces)  # one piece per token


def test_greedy_is_argmax_and_top_k_1_is_greedy(lm: StreamingPredictor) -> None:
    vocab = lm.contract.preprocessing.vocab
    greedy = _text(lm, max_tokens=15, temperature=0)
    assert greedy == _text(lm, max_tokens=15, top_k=1, seed=3)
    assert greedy == _text(lm, max_tokens=15, top_p=1e-9, seed=4)
    lm.reset()  # by hand: feed the prompt, take the argmax among non-specials
    logits = lm.step(encode_prompt("the ", vocab))[-1]
    first = int(np.argmax(np.where(np.arange(len(vocab)) < 3, -np.inf, logits)))
    if first != 3:  # <eos> ends generation
        assert greedy.startswith(vocab[first])


def test_sample_token_rules() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([5.0, 4.0, 3.0, 0.0, -1.0])
    picks = {sample_token(logits, rng, 1.0, top_k=2) for _ in range(200)}
    assert picks == {0, 1}
    picks = {sample_token(logits, rng, 1.0, banned=[0]) for _ in range(200)}
    assert 0 not in picks
    p0 = np.exp(5) / np.exp([5.0, 4, 3, 0, -1]).sum()  # ~0.66: top_p 0.5 keeps only id 0
    assert p0 > 0.5
    assert {sample_token(logits, rng, 1.0, top_p=0.5) for _ in range(100)} == {0}
    assert sample_token(logits, rng, 0.0) == 0
    hot = [sample_token(logits, rng, 100.0) for _ in range(500)]
    assert len(set(hot)) == 5  # high temperature flattens


def test_stop_strings_are_cut_and_never_shown(lm: StreamingPredictor) -> None:
    seed, full = next((s, t) for s in range(100) if len(t := _text(lm, max_tokens=60, seed=s)) > 6)
    stop = full[3:5]
    cut = _text(lm, max_tokens=60, seed=seed, stop=stop)
    assert cut == full[: full.find(stop)] and stop not in cut
    assert _text(lm, max_tokens=60, seed=seed, stop=["\x00never"]) == full


def test_prompt_encoding_and_bad_arguments(lm: StreamingPredictor) -> None:
    vocab = Vocabulary.from_list(lm.contract.preprocessing.vocab)
    np.testing.assert_array_equal(encode_prompt("the", vocab.tokens), vocab.encode("the"))
    assert encode_prompt("t#", vocab.tokens, unknown="unk")[-1] == Vocabulary.UNK
    assert "".join(lm.generate("", max_tokens=5, seed=1)) is not None  # empty: starts at <bos>
    assert list(lm.generate("the", max_tokens=0)) == []
    for kw in ({"temperature": -1}, {"top_k": 0}, {"top_p": 1.5}, {"max_tokens": -2}, {"seed": -1}):
        with pytest.raises(InputError):
            lm.generate("the", **kw)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="vocabulary"):
        StreamingPredictor(zoo.get("gru")).generate("x", max_tokens=3)


def test_generation_continues_the_stream_when_asked(lm: StreamingPredictor) -> None:
    whole = "".join(lm.generate("over the ", max_tokens=20, seed=5))
    lm.reset()
    lm.step(encode_prompt("over ", lm.contract.preprocessing.vocab))
    assert "".join(lm.generate("the ", max_tokens=20, seed=5, reset=False)) == whole


def test_cli_streams_generated_text() -> None:
    runner = CliRunner()
    path = str(zoo.get("char_lm"))
    args = ["generate", path, "--prompt", "the ", "--max-tokens", "30", "--seed", "7"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    lm = StreamingPredictor(path)
    assert res.output == "the " + "".join(lm.generate("the ", max_tokens=30, seed=7)) + "\n"
    bad = runner.invoke(main, ["generate", str(zoo.get("gru")), "--prompt", "x"])
    assert bad.exit_code == 1 and "vocabulary" in bad.output


def test_encoder_decoder_generation() -> None:
    path = zoo.get("seq2seq")
    pair = EncoderDecoder(path)
    a = "".join(pair.generate("the dog", max_tokens=20, seed=3))
    assert a == "".join(pair.generate("the dog", max_tokens=20, seed=3))
    greedy_ids = list(pair.greedy(encode_prompt("the dog", pair.vocab), bos=2, eos=3, max_len=20))
    greedy = "".join(pair.generate("the dog", max_tokens=20, temperature=0))
    assert greedy == "".join(pair.vocab[i] for i in greedy_ids if i > 3)
    res = CliRunner().invoke(
        main, ["generate", str(path), "--source", "the dog", "-t", "0", "-n", "20"]
    )
    assert res.exit_code == 0 and res.output == greedy + "\n"
    res = CliRunner().invoke(main, ["generate", str(path)])
    assert res.exit_code != 0 and "--source" in res.output


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 3},
        {"temperature": 0},
        {"seed": 11, "stop": "e"},
        {"seed": 11, "stop": ["e", "th"]},
    ],
)
def test_sampling_options_as_one_value_or_as_keywords(lm: StreamingPredictor, kw) -> None:
    """``sampling=Sampling(...)`` gives the text the old keywords give, for the predictor
    and the encoder-decoder, and the keywords still work, positionally too."""
    assert _text(lm, max_tokens=30, sampling=Sampling(**kw)) == _text(lm, max_tokens=30, **kw)
    t = Sampling(**kw)
    positional = "".join(lm.generate("the ", 30, t.temperature, t.top_k, t.top_p, t.seed, t.stop))
    assert positional == _text(lm, max_tokens=30, **kw)
    pair = EncoderDecoder(zoo.get("seq2seq"))
    one = "".join(pair.generate("the dog", 20, sampling=Sampling(**kw)))
    assert one == "".join(pair.generate("the dog", 20, **kw))


def test_sampling_is_frozen_normalised_and_checked() -> None:
    s = Sampling(stop="\n\n")
    assert s.stop == ("\n\n",) and Sampling(stop=["a", "b"]).stop == ("a", "b")
    assert Sampling(stop=None) == Sampling() and Sampling().stop == ()
    assert hash(Sampling(seed=1, stop=["x"])) == hash(Sampling(seed=1, stop=("x",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 3  # type: ignore[misc]
    bad = [
        ({"temperature": -1}, "temperature must be a finite number >= 0 (0: greedy), got -1"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"top_k": 0}, "top_k must be a positive int or None, got 0"),
        ({"top_k": 2.0}, "top_k must be a positive int or None, got 2.0"),
        ({"top_p": 1.5}, "top_p must be in (0, 1] or None, got 1.5"),
        ({"top_p": 0}, "top_p must be in (0, 1] or None, got 0"),
        ({"seed": -1}, "seed must be an int >= 0 or None (unseeded), got -1"),
        ({"seed": True}, "seed must be an int >= 0 or None (unseeded), got True"),
        ({"stop": ""}, "stop must be a non-empty string or a list of them, got ''"),
        ({"stop": ["a", 3]}, "stop must be a non-empty string or a list of them, got ['a', 3]"),
    ]
    for kw, message in bad:
        with pytest.raises(InputError, match=re.escape(message)):
            Sampling(**kw)


def test_sampling_and_keywords_together_are_refused_before_any_state_changes(
    lm: StreamingPredictor,
) -> None:
    lm.reset()
    lm.step(encode_prompt("over ", lm.contract.preprocessing.vocab))
    before = lm.state
    with pytest.raises(InputError, match=r"got sampling= and also top_k=, seed=; expected"):
        lm.generate("the ", 5, seed=2, top_k=3, sampling=Sampling(seed=1), reset=False)
    with pytest.raises(InputError, match="sampling must be a Sampling"):
        lm.generate("the ", 5, sampling={"seed": 1})  # type: ignore[arg-type]
    for kw in ({"temperature": -1}, {"stop": ""}, {"seed": -1}):  # refused before the prompt
        with pytest.raises(InputError):
            lm.generate("the ", 5, reset=False, **kw)  # type: ignore[arg-type]
    for name, value in before.items():
        np.testing.assert_array_equal(lm.state[name], value)
    pair = EncoderDecoder(zoo.get("seq2seq"))
    with pytest.raises(InputError, match="got sampling= and also temperature="):
        pair.generate("the dog", 5, temperature=0, sampling=Sampling())
    # keywords at their defaults beside sampling= are the defaults, not a second choice
    assert _text(lm, max_tokens=10, temperature=1.0, sampling=Sampling(seed=4)) == _text(
        lm, max_tokens=10, seed=4
    )


def test_cli_sampling_errors_name_the_flags() -> None:
    path = str(zoo.get("char_lm"))
    res = CliRunner().invoke(main, ["generate", path, "-p", "the ", "--stop", ""])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: --stop must be a non-empty string"), res.output
