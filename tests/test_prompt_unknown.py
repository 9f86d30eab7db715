"""Prompt characters missing from the vocabulary are refused, not silently fed as <unk>.

``encode_prompt`` owns the policy (``unknown="error" | "unk" | "skip"``, default
``error``); ``StreamingPredictor.generate``, ``EncoderDecoder`` and ``edgeseq generate
--unknown`` pass it through. A refused prompt changes no state.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cli import edgeseq, one_error_line
from _models import VOCAB_TEXT, zoo

from edgeseq.errors import InputError
from edgeseq.runtime import EncoderDecoder, StreamingPredictor, encode_prompt
from edgeseq.vocab import Vocabulary

VOCAB = Vocabulary.from_text(VOCAB_TEXT).to_list()


def test_unknown_characters_are_listed_with_the_vocabulary_size() -> None:
    with pytest.raises(InputError) as err:
        encode_prompt("the Quick fox!!", VOCAB)
    msg = str(err.value)
    assert f"vocabulary of {len(VOCAB)} tokens" in msg
    assert "'Q' (position 4)" in msg and "'!' (position 13, 2 times)" in msg
    assert "3 character(s)" in msg and "unknown='unk'" in msg and "unknown='skip'" in msg


def test_the_opt_in_policies_say_what_they_do() -> None:
    known = encode_prompt("the fox", VOCAB)
    unk = encode_prompt("the Fox", VOCAB, unknown="unk")
    assert unk[4] == Vocabulary.UNK and np.array_equal(np.delete(unk, 4), np.delete(known, 4))
    assert np.array_equal(encode_prompt("the f!ox", VOCAB, unknown="skip"), known)
    assert np.array_equal(encode_prompt("the fox", VOCAB, unknown="error"), known)
    with pytest.raises(InputError, match=r"unknown must be one of \['error', 'unk', 'skip'\]"):
        encode_prompt("the fox", VOCAB, unknown="ignore")


def test_a_vocabulary_without_unk_cannot_map_to_it() -> None:
    plain = list("abc")  # no <pad>/<unk>/<bos>/<eos>
    with pytest.raises(InputError, match="has no <unk>"):
        encode_prompt("abz", plain, unknown="unk")
    assert encode_prompt("abz", plain, unknown="skip").tolist() == [0, 1]


def test_generate_refuses_and_keeps_the_state() -> None:
    p = StreamingPredictor(zoo.get("char_lm"))
    p.step(encode_prompt("the lazy", VOCAB))
    before = {k: v.copy() for k, v in p.state.items()}
    with pytest.raises(InputError, match="'Z' "):
        p.generate("Zebra", max_tokens=3)
    for k, v in p.state.items():
        np.testing.assert_array_equal(v, before[k])
    assert len(list(p.generate("Zebra", max_tokens=3, seed=0, unknown="skip"))) <= 3


def test_encoder_decoder_source_text_is_refused_before_any_reset() -> None:
    pair = EncoderDecoder(zoo.get("seq2seq"))
    list(pair.greedy("the dog", Vocabulary.BOS, Vocabulary.EOS, max_len=3))
    before = {k: v.copy() for k, v in pair.decoder.state.items()}
    for call in (
        lambda: pair.generate("the Dog", max_tokens=3),
        lambda: list(pair.greedy("the Dog", Vocabulary.BOS, Vocabulary.EOS, max_len=3)),
    ):
        with pytest.raises(InputError, match="'D' "):
            call()
    for k, v in pair.decoder.state.items():
        np.testing.assert_array_equal(v, before[k])
    assert len(list(pair.generate("the Dog", max_tokens=3, seed=0, unknown="unk"))) <= 3


def test_cli_refuses_in_one_line_and_opts_in_with_unknown() -> None:
    model = zoo.get("char_lm")
    line = one_error_line(edgeseq("generate", model, "-p", "the Fox", "-n", "3"))
    assert "'F' (position 4)" in line and f"vocabulary of {len(VOCAB)} tokens" in line
    assert "--unknown unk" in line and "--unknown skip" in line
    done = edgeseq("generate", model, "-p", "the Fox", "-n", "3", "--seed", "0", "--unknown", "unk")
    assert done.returncode == 0 and done.stdout.startswith("the Fox"), done.stderr


@pytest.mark.parametrize("ids", [[4.7, 5.0], np.array([4, 5], np.float32), [True, False]])
def test_prompt_ids_that_are_not_integers_are_refused(ids) -> None:
    """Float ids used to be truncated (4.7 fed as 4); the frames check refuses them too."""
    with pytest.raises(InputError, match="prompt ids must be integers; got dtype"):
        encode_prompt(ids, VOCAB)
    assert encode_prompt(np.array([4, 5], np.uint8), VOCAB).tolist() == [4, 5]
    with pytest.raises(InputError, match=r"prompt ids must be in \[0, "):
        encode_prompt(np.array([2**63], np.uint64), VOCAB)  # not wrapped to a negative id
