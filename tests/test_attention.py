"""Seq2Seq with attention: trained, exported with the encoder memory as per-stream memory in
the contract, verified, and decoded token by token (solo, in chunks, in a pool) with parity
against PyTorch, for every cell x attention kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.contract import Contract
from edgeseq.errors import ContractError, ExportError, InputError
from edgeseq.exporters import export, export_model, verify
from edgeseq.exporters._onnx import op_histogram
from edgeseq.runtime import EncoderDecoder, StreamingPredictor, StreamPool
from edgeseq.train.checkpoint import load_checkpoint, save_checkpoint
from edgeseq.train.models import ATTENTIONS, CELLS, Seq2Seq, SeqConfig
from edgeseq.train.training import TrainConfig, fit_seq2seq

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


VOCAB = 11
NATIVE_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
CHUNKINGS = [[13], [1] * 13, [3, 3, 3, 3, 1], [7, 6], [1, 5, 7]]


def _tiny(cell: str, attention: str | None, tokens: bool = True) -> Seq2Seq:
    enc = SeqConfig(
        cell=cell, input_size=5 if tokens else 3, hidden_size=8, layers=2, output_size=8,
        vocab_size=VOCAB if tokens else None,
    )  # fmt: skip
    dec = SeqConfig(
        cell=cell, input_size=5, hidden_size=8, layers=2, output_size=VOCAB, vocab_size=VOCAB,
        task="translate",
    )  # fmt: skip
    return Seq2Seq(enc, dec, attention=attention)


def _pairs(rng: np.random.Generator, n: int = 24) -> tuple[list, list]:
    src = [rng.integers(4, VOCAB, int(k)) for k in rng.integers(2, 9, n)]
    return src, [np.r_[2, s[::-1], 3] for s in src]  # reverse the source: attention's job


def _torch_decode(model: Seq2Seq, src: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        state = model.encode(torch.from_numpy(src)[None])
        return model.decoder(torch.from_numpy(tokens)[None], state)[0][0].numpy()


def _torch_greedy(model: Seq2Seq, src: np.ndarray, max_len: int = 12) -> list[int]:
    with torch.no_grad():
        state, token, out = model.encode(torch.from_numpy(src)[None]), 2, []
        for _ in range(max_len):
            logits, state = model.decoder(torch.tensor([[token]]), state)
            token = int(logits[0, -1].argmax())
            if token == 3:
                break
            out.append(token)
    return out


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_train_export_stream_parity(cell: str, attention: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = _tiny(cell, attention)
    if attention == "dot":  # dot scores need memory and hidden of one size
        assert model.encoder.config.output_size == model.decoder.config.hidden_size
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=3, progress=False, val_fraction=0.0)
    before = [p.detach().clone() for p in model.decoder.attention.parameters()]
    fit_seq2seq(model, *_pairs(rng), cfg)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.decoder.attention.parameters()))
    model.eval()
    path = tmp_path / "m.onnx"
    written = export_model(model, path, max_source=10)
    for file in written:
        proto = onnx.load(file)
        onnx.checker.check_model(proto, full_check=True)
        assert not {"Loop", "Scan"} & set(op_histogram(proto))
    assert op_histogram(onnx.load(path)).get(NATIVE_OP[cell]) == 2

    contract = written[str(path)]
    assert contract.memory == ["memory_in.memory", "memory_in.mask"]
    shapes = {s.input: s.shape for s in contract.states}
    assert shapes["memory_in.memory"] == ["batch", 10, 8] and shapes["memory_in.mask"] == [
        "batch",
        10,
    ]
    assert contract.model.extra["attention"]["kind"] == attention

    pair = EncoderDecoder(path)
    src, tokens = rng.integers(4, VOCAB, 7), rng.integers(0, VOCAB, 13)
    ref = _torch_decode(model, src, tokens)
    for chunks in CHUNKINGS:
        pair.decoder.reset()
        pair.start(src)
        got, start = [], 0
        for size in chunks:
            piece = tokens[start : start + size]
            y = pair.decoder.step(piece[0] if size == 1 else piece)
            got.append(y[None] if size == 1 else y)
            start += size
        assert np.abs(np.concatenate(got) - ref).max() <= TOL, chunks
    for k in (1, 5, 10):  # sources up to the memory's rows, each padded and masked
        s = rng.integers(4, VOCAB, k)
        assert list(pair.greedy(s, 2, 3, 12)) == _torch_greedy(model, s)
    with pytest.raises(InputError, match="memory holds 1 to 10 rows"):
        pair.start(rng.integers(4, VOCAB, 11))


@pytest.mark.parametrize("attention", ["general", "additive"])
def test_verify_covers_the_memory(attention: str, tmp_path: Path) -> None:
    """verify() starts streams from random memory: a decoder whose attention differs fails."""
    torch.manual_seed(0)
    model = _tiny("gru", attention, tokens=False).eval()  # frames in: the encoder of audio
    path = tmp_path / "m.onnx"
    export_model(model, path, max_source=6)
    report = verify(model, path)
    assert report.ok(1e-5), report.table(per_case=True)
    names = {d.name for d in report.diffs}
    assert {"memory_out.memory", "memory_out.mask", "m.encoder.onnx: y"} <= names
    with torch.no_grad():
        model.decoder.attention.combine.weight[:, :8] += 0.5  # the context's weights only
    assert not verify(model, path).ok(1e-3)


def test_pool_streams_keep_their_own_memory(tmp_path: Path) -> None:
    """Decoders primed with different sources, stepped together in one pool, each equal
    their solo run: the memory travels per stream (snapshots, batched calls)."""
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    model = _tiny("lstm", "general").eval()
    path = tmp_path / "m.onnx"
    export_model(model, path, max_source=9)
    pair = EncoderDecoder(path)
    sources = [rng.integers(4, VOCAB, k) for k in (2, 9, 5)]
    tokens = [rng.integers(0, VOCAB, 6) for _ in sources]
    with StreamPool(path, max_streams=4) as pool:
        ids = []
        for s in sources:
            pair.decoder.reset()
            pair.start(s)
            ids.append(pool.open(pair.decoder.snapshot()))
        outs = [pool.step({sid: t[:3] for sid, t in zip(ids, tokens)})]
        outs.append(pool.step({ids[0]: tokens[0][3:], ids[2]: tokens[2][3:]}))
        outs.append(pool.step({ids[1]: tokens[1][3:]}))
    for i, (s, t) in enumerate(zip(sources, tokens)):
        got = np.concatenate([o[ids[i]] for o in outs if ids[i] in o])
        assert np.abs(got - _torch_decode(model, s, t)).max() <= TOL


def test_checkpoint_cli_export_and_verify(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _tiny("gru", "additive")
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "a.pt", model))
    assert isinstance(loaded, Seq2Seq) and loaded.attention == "additive"
    src, tgt = torch.randint(4, VOCAB, (1, 6)), torch.randint(0, VOCAB, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(loaded(src, tgt), model.eval()(src, tgt))
    run = CliRunner().invoke
    out = tmp_path / "a.onnx"
    res = run(main, ["export", str(tmp_path / "a.pt"), "-o", str(out), "--verify"])
    assert res.exit_code == 0, res.output
    res = run(main, ["verify", str(tmp_path / "a.pt"), str(out)])
    assert res.exit_code == 0 and "PASS" in res.output, res.output
    res = run(main, ["inspect", str(out)])
    assert res.exit_code == 0 and "per-stream memory" in res.output, res.output


def test_unrolled_mode_streams_the_attention_decoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _tiny("lstm", "general").eval()
    path = tmp_path / "u.onnx"
    export_model(model, path, mode="unrolled", chunk=4, max_source=8)
    assert "LSTM" not in op_histogram(onnx.load(path))
    assert verify(model, path).ok(1e-5)


def test_bad_memory_is_refused(tmp_path: Path) -> None:
    class Attend(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(3, 4, batch_first=True)

        def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
            y, _ = self.rnn(x)  # (batch, T, 4)
            return torch.softmax(y @ memory.transpose(1, 2), -1) @ memory

    torch.manual_seed(0)
    x, model = torch.randn(2, 5, 3), Attend().eval()
    good = {"memory": torch.randn(2, 6, 4)}
    contract = export(model, tmp_path / "a.onnx", example=x, memory=good)
    assert contract.memory == ["memory_in.memory"]
    cases = [
        ({"memory": torch.randn(3, 6, 4)}, "example's batch 2"),
        ({"memory": torch.randn(2, 6, 4).double()}, "float32 tensor"),
        ({"not valid": torch.randn(2, 6, 4)}, "identifiers"),
        ({"memory": torch.full((2, 6, 4), float("nan"))}, "NaN"),
    ]
    for memory, match in cases:
        with pytest.raises(ExportError, match=match):
            export(Attend(), tmp_path / "b.onnx", example=x, memory=memory)
    with pytest.raises(ExportError, match="offline"):
        export(Attend(), tmp_path / "b.onnx", example=x, memory=good, offline=True)
    # a user module's memory streams like an edgeseq decoder's, set with set_state
    p = StreamingPredictor(tmp_path / "a.onnx")
    mem = np.random.default_rng(0).standard_normal((1, 6, 4)).astype(np.float32)
    p.set_state({**p.state, "memory_in.memory": mem})
    frames = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    got = np.concatenate([p.step(frames[:2]), p.step(frames[2:])])
    with torch.no_grad():
        ref = model(torch.from_numpy(frames)[None], torch.from_numpy(mem))[0].numpy()
    assert np.abs(got - ref).max() <= TOL
    assert verify(model, tmp_path / "a.onnx").ok(1e-5)


def test_contract_memory_field() -> None:
    from test_contract import make_contract

    old = make_contract()
    assert "memory" not in old.to_dict()  # contracts without memory keep their JSON and hash
    data = old.to_dict()
    data["memory"] = ["state_in.rnn.h"]
    assert Contract.from_dict(data).memory == ["state_in.rnn.h"]
    data["memory"] = ["x"]
    with pytest.raises(ContractError, match="'memory'"):
        Contract.from_dict(data)
