"""LoadOptions at the call sites that load models beside the predictor and the pool:
EncoderDecoder, `edgeseq stream`, `generate`, `serve` (ServeOptions) and to_triton.

Each builds one checked LoadOptions: keywords and ``options=`` load alike, and a bad
value is the runtime's own error (one line, exit 1 on the CLI) before anything changes.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
from _models import zoo
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.errors import InputError, ProviderError
from edgeseq.runtime import EncoderDecoder, LoadOptions
from edgeseq.runtime.generate import BOS


@pytest.fixture(scope="module")
def caption(tmp_path_factory) -> Path:
    """A one-to-many decoder whose init model is a bridge graph (not a predictor)."""
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    cfg = SeqConfig(
        cell="gru", input_size=5, hidden_size=8, output_size=6, vocab_size=6,
        condition_size=4, topology="one_to_many", task="caption",
    )  # fmt: skip
    path = tmp_path_factory.mktemp("caption") / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(SeqModel(cfg), path)
    return path


def _decoded(pair: EncoderDecoder, source) -> tuple[list[int], dict]:
    """12 greedy tokens (no EOS stops them: an untrained decoder may say it first) and the
    decoder's state after them."""
    return list(pair.greedy(source, BOS, -1, max_len=12)), pair.decoder.state


@pytest.mark.parametrize("model", ["seq2seq", "caption"])
def test_encoder_decoder_keywords_and_options_decode_alike(model: str, caption: Path) -> None:
    path = zoo.get("seq2seq") if model == "seq2seq" else caption
    source = "the dog" if model == "seq2seq" else np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    options = LoadOptions(threads=1)
    pairs = [
        EncoderDecoder(path, threads=1),
        EncoderDecoder(path, None, "cpu", 1),  # positional, as before
        EncoderDecoder(path, options=options),
    ]
    tokens, state = _decoded(pairs[0], source)
    assert len(tokens) == 12
    for pair in pairs[1:]:
        got, after = _decoded(pair, source)
        assert got == tokens and after.keys() == state.keys()
        for name, value in state.items():
            np.testing.assert_array_equal(after[name], value)
    assert pairs[2].options is options and pairs[2].decoder.options is options
    assert pairs[0].options.threads == pairs[1].options.threads == 1
    if pairs[2].encoder is not None:  # the encoder gets device and threads, nothing else
        assert pairs[2].encoder.options.threads == 1 and pairs[2].encoder.options.device == "cpu"
    else:
        assert pairs[2]._bridge.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"options": LoadOptions(context=4)}, InputError, r"got context=4 in its options; exp"),
        ({"options": LoadOptions(window=8, context=0)}, InputError, r"context=0, window=8"),
        ({"options": LoadOptions(), "threads": 2}, InputError, "got options= and also threads="),
        ({"options": {"threads": 1}}, InputError, "options must be a LoadOptions"),
        ({"threads": 0}, InputError, "threads must be a positive int"),
        ({"device": "no-such-device"}, ProviderError, "Available"),
    ],
)
def test_encoder_decoder_refuses_options_that_do_not_apply(kw, error, message) -> None:
    with pytest.raises(error, match=message):
        EncoderDecoder(zoo.get("seq2seq"), **kw)


def test_the_init_model_ignores_nothing_silently_the_decoder_keeps_its_fields() -> None:
    """contract, state and constants are the decoder's: the encoder reads its own file."""
    plain = EncoderDecoder(zoo.get("seq2seq"))
    given = dataclasses.replace(plain.decoder.contract)
    pair = EncoderDecoder(zoo.get("seq2seq"), options=LoadOptions(contract=given))
    assert pair.decoder.contract is given
    assert pair.encoder is not None and pair.encoder.options.contract is None
    assert _decoded(pair, "the dog")[0] == _decoded(plain, "the dog")[0]


def _error_line(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_a_bad_device_is_one_checked_line_from_every_loading_command(tmp_path: Path) -> None:
    """`stream`, `generate` and `serve` build one LoadOptions from their flags: the same
    refusal, in the CLI's words, before a model loads or a state folder is made."""
    state = tmp_path / "state"
    commands = {
        "stream": ["stream", zoo.get("lstm"), "-i", "-"],
        "generate": ["generate", zoo.get("char_lm")],
        "seq2seq": ["generate", zoo.get("seq2seq"), "--source", "a"],
        "serve": ["serve", zoo.get("lstm"), "--port", "0", "--state-dir", state],
    }
    lines = {k: _error_line([*map(str, v), "--device", "nope"]) for k, v in commands.items()}
    assert len(set(lines.values())) == 1, lines
    line = lines["stream"]
    assert "device 'nope' needs nope" in line and "e.g. --device cpu" in line, line
    assert not state.exists() and list(tmp_path.iterdir()) == []


def test_serve_options_hold_one_checked_load_options() -> None:
    from edgeseq.serve import ServeOptions

    o = ServeOptions(threads=2)
    assert o.loading.threads == 2 and o.loading.device == "cpu"
    assert dataclasses.replace(o, threads=3).loading.threads == 3
    with pytest.raises(InputError, match="threads must be a positive int"):
        ServeOptions(threads=0)
    # the device is looked up where the pool loads: a Ray replica may have a GPU we lack
    remote = ServeOptions(device="nope")
    with pytest.raises(ProviderError, match="device 'nope' needs nope"):
        remote.loading  # noqa: B018


def test_the_server_pool_loads_with_the_serve_options(tmp_path: Path) -> None:
    from edgeseq.serve import ServeOptions
    from edgeseq.serve._service import StreamService

    options = ServeOptions(port=0, max_streams=2, threads=1, idle_timeout=None)
    service = StreamService(zoo.get("lstm"), options, lambda line: None)
    try:
        loaded = service.pool.options
        assert (loaded.device, loaded.threads) == ("cpu", 1)
        assert loaded.contract is loaded.state is loaded.constants is None
    finally:
        service.pool.shutdown()


def test_to_triton_checks_its_constants_as_load_options_before_writing(tmp_path: Path) -> None:
    from edgeseq.exporters.triton import to_triton

    repo = tmp_path / "repo"
    with pytest.raises(InputError, match="constants must be a dict keyed by input name"):
        to_triton(zoo.get("lstm"), repo, constants=[("scale", 3)])  # type: ignore[arg-type]
    assert not repo.exists()
    written = to_triton(zoo.get("lstm"), repo, backend="python", constants={})
    assert (written.models["lstm"] / "config.pbtxt").is_file()
