"""LoadOptions: how a predictor, a pool and their engine load a model, as one value.

Checked when made (a bad value is an edgeseq error naming the field); the old keywords
and ``options=`` load the same model the same way; both for one field are refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _models import VAD_CONTEXT, zoo

from edgeseq.errors import InputError, ProviderError
from edgeseq.runtime import LoadOptions, StreamingPredictor, StreamPool

SR = {"sr": np.array(16000, np.int64)}
VAD = {"state": {"state": "stateN"}, "constants": SR, "context": VAD_CONTEXT, "window": 8}
X = np.random.default_rng(5).standard_normal(60).astype(np.float32)

BAD = {
    "threads 0": ({"threads": 0}, InputError, "threads must be a positive int"),
    "threads float": ({"threads": 1.5}, InputError, "threads must be a positive int"),
    "threads bool": ({"threads": True}, InputError, "threads must be a positive int"),
    "context negative": ({"context": -1}, InputError, "context must be a non-negative int"),
    "context text": ({"context": "4"}, InputError, "context must be a non-negative int"),
    "window 0": ({"window": 0}, InputError, "window must be a positive int"),
    "window bool": ({"window": True}, InputError, "window must be a positive int"),
    "device empty": ({"device": ""}, ProviderError, "device must be a name"),
    "device unknown": ({"device": "no-such-device"}, ProviderError, "Available"),
    "contract dict": ({"contract": {}}, InputError, "contract must be an edgeseq Contract"),
    "state list": ({"state": ["state"]}, InputError, "state must be a dict"),
    "constants list": ({"constants": [1]}, InputError, "constants must be a dict"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_are_refused_naming_the_field(case: str) -> None:
    kw, error, message = BAD[case]
    with pytest.raises(error, match=message):
        LoadOptions(**kw)
    # the same value as a keyword is refused the same way, before anything loads
    with pytest.raises(error, match=message):
        StreamingPredictor(zoo.get("lstm"), **kw)
    with pytest.raises(error, match=message):
        StreamPool(zoo.get("lstm"), 2, **kw)


def test_options_are_frozen_and_keep_their_own_constants() -> None:
    given = {"sr": np.array(16000, np.int64)}
    options = LoadOptions(constants=given)
    given["sr"] = np.array(8000, np.int64)
    assert int(options.constants["sr"]) == 16000  # type: ignore[index]
    with pytest.raises(TypeError):
        options.constants["sr"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.threads = 2  # type: ignore[misc]


def test_keywords_and_options_stream_the_same() -> None:
    options = LoadOptions(threads=1, **VAD)  # type: ignore[arg-type]
    by_kw = StreamingPredictor(zoo.get("vad"), threads=1, **VAD)
    by_opts = StreamingPredictor(zoo.get("vad"), options=options)
    positional = StreamingPredictor(zoo.get("vad"), "cpu", 1, **VAD)
    assert by_opts.options is options and by_kw.options.window == 8
    assert by_kw.contract == by_opts.contract == positional.contract
    want = by_kw.step(X)
    assert want.shape == (7, 1)
    np.testing.assert_array_equal(by_opts.step(X), want)
    np.testing.assert_array_equal(positional.step(X), want)
    # one value shared by a pool: each stream gives what the predictor gave
    with StreamPool(zoo.get("vad"), max_streams=2, options=options) as pool:
        a, b = pool.open(), pool.open()
        out = pool.step({a: X, b: X[:30]})
        np.testing.assert_array_equal(out[a], want)
        assert pool.options is options
    with StreamPool(zoo.get("vad"), 2, "cpu", 1, **VAD) as pool:
        a = pool.open()
        np.testing.assert_array_equal(pool.step({a: X})[a], want)


def test_a_given_contract_travels_in_options(tmp_path) -> None:
    contract = StreamingPredictor(zoo.get("lstm")).contract
    p = StreamingPredictor(zoo.get("lstm"), options=LoadOptions(contract=contract))
    assert p.contract == contract and p.engine.options.contract is contract


def test_the_step_graph_gets_device_threads_and_constants_only() -> None:
    p = StreamingPredictor(zoo.get("unrolled"), options=LoadOptions(threads=1))
    step = p.engine.step
    assert step is not None and step.options.threads == 1
    assert step.options.contract is None and step.options.window is None


@pytest.mark.parametrize("front", ["predictor", "pool"])
def test_options_and_a_keyword_for_one_field_are_refused(front: str) -> None:
    def load(*args, **kw):
        if front == "predictor":
            return StreamingPredictor(zoo.get("lstm"), *args, **kw)
        return StreamPool(zoo.get("lstm"), 2, *args, **kw)

    with pytest.raises(InputError, match=r"got options= and also threads=, context=; expected"):
        load(threads=2, context=0, options=LoadOptions(threads=2))
    with pytest.raises(InputError, match="got options= and also device="):
        load("cpu:0", options=LoadOptions())
    with pytest.raises(InputError, match="options must be a LoadOptions"):
        load(options={"threads": 1})
    # keywords left at their defaults beside options= are no second choice
    assert load(threads=None, options=LoadOptions(threads=1)).options.threads == 1
