"""Left context is refused where the model's state already holds its past.

``context=N`` (CLI ``--context N``) re-feeds the last ``N`` frames on every call. A model
whose state carries those frames (every edgeseq export; a plain RNN from elsewhere,
which streams exactly without context) would see them twice, so it is refused before the
first call; a model with a stateless front-end (the VAD's conv) keeps it, and a context
recorded in the contract is the model author's word.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from _cli import edgeseq, one_error_line
from _models import VAD_CONTEXT, zoo
from test_state_pairs_complete import external_lstm

from edgeseq.errors import InputError
from edgeseq.runtime import StreamingPredictor, StreamPool

SR = {"sr": np.array(16000)}
EXT = {"state": {"h0": "hn", "c0": "cn"}}


@pytest.mark.parametrize("front", [StreamingPredictor, StreamPool])
@pytest.mark.parametrize("model", ["lstm", "gru", "unrolled"])
def test_context_is_refused_on_an_edgeseq_export(front, model: str) -> None:
    with pytest.raises(InputError, match=r"context=3: expected no left context.*edgeseq"):
        front(zoo.get(model), context=3)


@pytest.mark.parametrize("how", ["named", "discovered"])
def test_context_is_refused_on_an_rnn_that_streams_exactly_without_it(how: str) -> None:
    kw = EXT if how == "named" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DiscoveryWarning
        with pytest.raises(InputError, match=r"same state with the same outputs"):
            StreamingPredictor(external_lstm(), context=2, **kw)
        StreamingPredictor(external_lstm(), **kw)  # without context: as before


def test_context_is_kept_where_the_state_does_not_hold_the_past() -> None:
    """The VAD's conv needs 4 samples of history its state does not carry: its context
    streams exactly as one whole call does (see also test_discover.py)."""
    x = np.random.default_rng(0).standard_normal(48).astype(np.float32)
    p = StreamingPredictor(zoo.get("vad"), state={"state": "stateN"}, constants=SR, context=4)
    p.step(x[:20])
    pieces = np.asarray(p.step(x[20:]))
    assert p.engine.context == VAD_CONTEXT and pieces.shape == (1,)


def test_a_recorded_context_is_the_authors_word(tmp_path: Path) -> None:
    """The way out for a model documented to take context on top of its state: record it
    once in the contract; it is then used (and may be given again) without a refusal."""
    out = tmp_path / "with_context.onnx"
    done = edgeseq("inspect", external_lstm(), "--context", "2", "--write-contract", out)
    assert done.returncode == 0, done.stderr
    assert StreamingPredictor(out).engine.context == 2
    assert StreamingPredictor(out, context=2).engine.context == 2
    with pytest.raises(InputError, match="context=3"):
        StreamingPredictor(out, context=3)


def test_cli_context_on_an_edgeseq_forecaster_is_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "f.csv"
    csv.write_text("1,2,3\n4,5,6\n7,8,9\n")
    line = one_error_line(edgeseq("stream", zoo.get("lstm"), "-i", csv, "--context", "2"))
    assert "--context 2: expected no left context" in line
    assert "edgeseq inspect MODEL --context 2 --write-contract OUT.onnx" in line
    done = edgeseq("stream", zoo.get("lstm"), "-i", csv)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 3, done.stderr
