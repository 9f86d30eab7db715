"""Dropout while training on a recurrent layer's input and output (SeqConfig.input_dropout,
output_dropout) and on an attention decoder's memory (Seq2Seq(memory_dropout=)), for plain
models and encoder-decoders; the identity in eval mode, so the exported graph has no
dropout and streams exactly what the eval model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeseq.exporters import export_model
from edgeseq.exporters._onnx import op_histogram
from edgeseq.runtime import EncoderDecoder, StreamingPredictor
from edgeseq.train.checkpoint import load_checkpoint, save_checkpoint
from edgeseq.train.models import CELLS, Seq2Seq, SeqConfig, SeqModel
from edgeseq.train.training import TrainConfig, fit_seq2seq

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

VOCAB = 11


def _pair(cell: str, p: float) -> Seq2Seq:
    torch.manual_seed(0)
    enc = SeqConfig(cell=cell, input_size=5, hidden_size=8, output_size=8, vocab_size=VOCAB,
                    input_dropout=p)  # fmt: skip
    dec = SeqConfig(cell=cell, input_size=5, hidden_size=8, output_size=VOCAB, vocab_size=VOCAB,
                    task="translate", input_dropout=p, output_dropout=p)  # fmt: skip
    return Seq2Seq(enc, dec, attention="general", memory_dropout=p)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
@pytest.mark.parametrize("name", ["dropout", "input_dropout", "output_dropout"])
def test_out_of_range_is_refused(name: str, bad: float) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be in \[0, 1\)"):
        SeqConfig(**{name: bad})
    enc, dec = SeqConfig(output_size=4), SeqConfig(output_size=4, vocab_size=4, input_size=3)
    with pytest.raises(ValueError, match=r"memory_dropout must be in \[0, 1\)"):
        Seq2Seq(enc, dec, attention="general", memory_dropout=bad)
    with pytest.raises(ValueError, match="memory_dropout needs attention"):
        Seq2Seq(enc, dec, memory_dropout=0.2)


@pytest.mark.parametrize("cell", CELLS)
def test_active_while_training_identity_in_eval(cell: str) -> None:
    """Training-mode outputs vary from call to call; eval-mode outputs equal those of the
    same weights without dropout (plain model and attention encoder-decoder)."""
    torch.manual_seed(0)
    cfg = SeqConfig(cell=cell, input_size=3, hidden_size=8, output_size=2, input_dropout=0.5,
                    output_dropout=0.5)  # fmt: skip
    model = SeqModel(cfg)
    twin = SeqModel(SeqConfig(**{**cfg.__dict__, "input_dropout": 0.0, "output_dropout": 0.0}))
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 6, 3)
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])
    model.eval()
    assert torch.equal(model(x)[0], twin.eval()(x)[0])

    pair, pair0 = _pair(cell, 0.5), _pair(cell, 0.0)
    pair0.load_state_dict(pair.state_dict())
    src, tgt = torch.randint(4, VOCAB, (2, 7)), torch.randint(0, VOCAB, (2, 5))
    pair.train()
    assert not torch.equal(pair(src, tgt), pair(src, tgt))
    pair.eval()
    assert torch.equal(pair(src, tgt), pair0.eval()(src, tgt))


def test_training_with_it_is_seeded_and_exports_without_dropout(tmp_path: Path) -> None:
    """Two seeded fits give the same weights; the exported pair holds no Dropout node and
    its greedy decoding equals PyTorch's; a checkpoint keeps the setting."""
    rng = np.random.default_rng(0)
    src = [rng.integers(4, VOCAB, int(k)) for k in rng.integers(2, 9, 24)]
    tgt = [np.r_[2, s[::-1], 3] for s in src]
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=3, progress=False, val_fraction=0.0)
    models = [_pair("gru", 0.3), _pair("gru", 0.3)]
    for m in models:
        fit_seq2seq(m, src, tgt, cfg)
    for a, b in zip(*(m.state_dict().values() for m in models)):
        assert torch.equal(a, b)
    model = models[0].eval()

    path = tmp_path / "m.onnx"
    for file in export_model(model, path, max_source=10):
        assert not {"Dropout"} & set(op_histogram(onnx.load(file)))
    pair = EncoderDecoder(path)
    for s in src[:6]:
        with torch.no_grad():
            state, token, ref = model.encode(torch.from_numpy(s)[None]), 2, []
            for _ in range(12):
                logits, state = model.decoder(torch.tensor([[token]]), state)
                token = int(logits[0, -1].argmax())
                if token == 3:
                    break
                ref.append(token)
        assert list(pair.greedy(s, 2, 3, 12)) == ref

    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.encoder.config.input_dropout == loaded.decoder.config.output_dropout == 0.3
    assert loaded.decoder.memory_dropout == 0.3


def test_plain_model_exports_and_streams_as_in_eval(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SeqModel(SeqConfig(cell="lstm", input_size=3, hidden_size=8, output_size=2,
                               input_dropout=0.4, output_dropout=0.4)).eval()  # fmt: skip
    path = tmp_path / "m.onnx"
    export_model(model, path)
    assert "Dropout" not in op_histogram(onnx.load(path))
    x = np.random.default_rng(1).standard_normal((9, 3)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None])[0][0].numpy()
    got = StreamingPredictor(path).step(x)
    assert np.abs(got - ref).max() <= 1e-5
