"""Any PyTorch module with recurrent layers: made streamable, or refused with a clear reason."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_export_support import Net, UserNet, stream, torch_whole
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters import export, verify
from edgeseq.exporters._onnx import read_contract
from edgeseq.runtime import StreamingPredictor

X = torch.randn(2, 6, 3)


def _frames(n: int = 17, f: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, f)).astype(np.float32)


@pytest.mark.parametrize("mode", ["native", "unrolled"])
def test_user_module_streams_with_parity(mode, tmp_path) -> None:
    """Conv1d(k=1) -> LayerNorm -> LSTM -> Linear, no state in forward, code unchanged."""
    torch.manual_seed(0)
    model = UserNet()  # train mode: export must not switch the caller's module
    path = tmp_path / "user.onnx"
    chunk = 5 if mode == "unrolled" else None  # 17 frames: a padded tail
    contract = export(model, path, example=X, mode=mode, chunk=chunk)
    assert model.training
    # users see each layer's state whole; the graph carries it per layer, as LSTM nodes take it
    views = contract.state_views()
    assert [(v.name, v.shape) for v in views] == [
        ("state_in.lstm.h", [2, "batch", 6]),
        ("state_in.lstm.c", [2, "batch", 6]),
    ]
    assert [(p.input, p.shape, p.part_of) for p in contract.states[:2]] == [
        ("state_in.lstm.h.l0", [1, "batch", 6], "state_in.lstm.h"),
        ("state_in.lstm.h.l1", [1, "batch", 6], "state_in.lstm.h"),
    ]
    x = _frames()
    want = torch_whole(model, x)
    pred = StreamingPredictor(path)
    for k in (1, 3, 7, None):
        np.testing.assert_allclose(stream(pred, x, k), want, atol=1e-5, rtol=0)
    assert verify(model, path).ok(1e-5)


class Stacked(nn.Module):
    """Linear front-end, an LSTM, then a ModuleList of GRUs, then a head: three state pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Linear(3, 4)
        self.enc = nn.LSTM(4, 5, batch_first=True)
        self.blocks = nn.ModuleList([nn.GRU(5, 5, batch_first=True) for _ in range(2)])
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.enc(torch.tanh(self.front(x)))
        for block in self.blocks:
            y = y + block(y)[0]
        return self.head(y), y.mean(dim=-1)  # two outputs, both per frame


def test_layers_in_sequence_and_tuple_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    model = Stacked().eval()
    path = tmp_path / "stacked.onnx"
    c = export(model, path, example=X, output_names=["y", "energy"])
    assert c.state_inputs == [
        "state_in.enc.h",
        "state_in.enc.c",
        "state_in.blocks.0.h",
        "state_in.blocks.1.h",
    ]
    assert [o.name for o in c.data_outputs()] == ["y", "energy"]
    assert c.model.cell == "mixed"
    x = _frames()
    with torch.no_grad():
        y, e = model(torch.from_numpy(x)[None])
    pred = StreamingPredictor(path)
    parts = [pred.step(x[i : i + 4]) for i in range(0, len(x), 4)]
    np.testing.assert_allclose(np.concatenate([p["y"] for p in parts]), y[0], atol=1e-5)
    np.testing.assert_allclose(np.concatenate([p["energy"] for p in parts]), e[0], atol=1e-5)
    assert verify(model, path).ok(1e-5)


def test_learned_initial_state_is_stored_in_the_contract(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net("lstm", layers=2, init=True).eval()
    c = export(model, tmp_path / "init.onnx", example=X)
    h0, h1 = c.states[:2]  # the graph carries h per layer, each with its initial value
    assert (h0.part_of, h1.part_of) == ("state_in.rnn.h", "state_in.rnn.h")
    init = np.concatenate([np.reshape(h.init, (1, 1, 5)) for h in (h0, h1)])
    np.testing.assert_allclose(init, model.h0.detach(), rtol=1e-6)
    x = _frames()
    pred = StreamingPredictor(tmp_path / "init.onnx")
    np.testing.assert_allclose(stream(pred, x, 3), torch_whole(model, x), atol=1e-5)


class ZerosFromAttributes(nn.Module):
    """Builds its zero state from the layer's attributes, as tutorials do."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(self.rnn.num_layers, x.shape[0], self.rnn.hidden_size)
        return self.rnn(x, h0)[0]


def test_forward_may_read_layer_attributes(tmp_path) -> None:
    model = ZerosFromAttributes().eval()
    c = export(model, tmp_path / "z.onnx", example=X)
    assert c.states[0].init == "zeros"
    x = _frames()
    np.testing.assert_allclose(
        stream(StreamingPredictor(tmp_path / "z.onnx"), x, 4), torch_whole(model, x), atol=1e-5
    )


class InputInit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.tanh(x[:, 0, :1]).expand(-1, 4)[None].contiguous()  # depends on the input
        return self.rnn(x, h0)[0]


class Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((x.shape[0],), x.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        return nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True)[0]


class TimeNorm(nn.Module):
    """Subtracts the mean over time: every output depends on every frame."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rnn(x)[0]
        return self.head(y - y.mean(dim=1, keepdim=True))


class SelfAttention(nn.Module):
    """Dot-product self-attention over all frames (not causal)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(size, 3 * size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(y).chunk(3, dim=-1)
        return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v  # (batch, time, size)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True)
        self.attn = SelfAttention(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.rnn(x)[0])


class WideConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Conv1d(3, 3, kernel_size=3, padding=1)  # sees the next frame
        self.rnn = nn.RNN(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.front(x.transpose(1, 2)).transpose(1, 2))[0]


@pytest.mark.parametrize(
    "model,match",
    [
        (Net("gru", bidirectional=True), r"layer 'rnn' is bidirectional"),
        (Packed(), r"layer 'rnn' received a PackedSequence.*padded tensors"),
        (InputInit(), r"layer 'rnn'.*differs between batch rows.*offline=True"),
        (
            TimeNorm(),
            r"output 'y'.*code in forward\(\) before 'head'.*input already differs.*"
            r"looks into the future.*every later frame",
        ),
        (
            Attention(),
            r"cannot stream.*'attn' \(SelfAttention\): it looks into the future.*"
            r"every later frame",
        ),
        (WideConv(), r"layer 'front' \(Conv1d, kernel 3.*looks ahead 1 frame.*offline=True"),
    ],
    ids=["bidirectional", "packed", "input_init", "time_norm", "attention", "wide_conv"],
)
def test_models_that_cannot_stream_are_refused(model, match, tmp_path) -> None:
    with pytest.raises(ExportError, match=match) as info:
        export(model, tmp_path / "m.onnx", example=X)
    assert "offline" in str(info.value) or "PackedSequence" in str(info.value)


@pytest.mark.parametrize("model", [TimeNorm(), Attention(), WideConv()], ids=type)
def test_offline_export_of_non_causal_models(model, tmp_path) -> None:
    """offline=True: whole sequence per call, no state; parity on whole sequences."""
    model.eval()
    path = tmp_path / "off.onnx"
    c = export(model, path, example=X, offline=True)
    assert not c.states and c.model.stateful is False
    x = _frames(9)
    np.testing.assert_allclose(
        StreamingPredictor(path).step(x), torch_whole(model, x), atol=1e-5, rtol=0
    )


def test_a_bare_recurrent_layer_exports(tmp_path) -> None:
    rnn = nn.LSTM(3, 4, num_layers=2)  # batch_first=False: export still takes (batch, time, F)
    path = tmp_path / "bare.onnx"
    c = export(rnn, path, example=X)
    assert [v.name for v in c.state_views()] == ["state_in.rnn.h", "state_in.rnn.c"]
    assert c.frames.batch_axis == 1  # the layer's own time-major layout, no Transpose
    x = _frames()
    with torch.no_grad():
        want = rnn(torch.from_numpy(x)[:, None])[0][:, 0].numpy()
    np.testing.assert_allclose(stream(StreamingPredictor(path), x, 5), want, atol=1e-5)


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 4)
        self.rnn = nn.GRU(4, 5, batch_first=True)
        self.head = nn.Linear(5, 11)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(ids))[0])


@pytest.mark.parametrize("mode", ["native", "unrolled"])
def test_token_model(mode, tmp_path) -> None:
    torch.manual_seed(0)
    model = Tokens().eval()
    path = tmp_path / "tok.onnx"
    c = export(model, path, example=torch.randint(0, 11, (2, 5)), mode=mode)
    assert c.inputs[0].dtype == "int64"
    report = verify(model, path)  # token range from the module's nn.Embedding
    assert report.ok(1e-5), report.table()


def test_a_row_without_frames_keeps_its_state(tmp_path) -> None:
    """onnxruntime zeroes Y_h for sequence_lens 0; the exported graph keeps the old state."""
    path = tmp_path / "n.onnx"
    export(Net("lstm").eval(), path, example=X, lengths=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    h = np.random.default_rng(0).standard_normal((1, 2, 5)).astype(np.float32)
    c = np.random.default_rng(1).standard_normal((1, 2, 5)).astype(np.float32)
    x = _frames(6)[None].repeat(2, 0)
    if read_contract(path).frames.batch_axis == 1:  # time-major, as the LSTM node takes it
        x = np.ascontiguousarray(x.swapaxes(0, 1))
    feed = {"x": x, "lengths": np.array([6, 0], np.int32)}
    h2, c2 = sess.run(
        ["state_out.rnn.h", "state_out.rnn.c"],
        {**feed, "state_in.rnn.h": h, "state_in.rnn.c": c},
    )
    np.testing.assert_array_equal(h2[:, 1], h[:, 1])
    np.testing.assert_array_equal(c2[:, 1], c[:, 1])
    assert not np.allclose(h2[:, 0], h[:, 0])


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.rnn(x)[0])[0]


class ReturnsState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 3, batch_first=True)

    def forward(self, x: torch.Tensor):
        return self.rnn(x)


@pytest.mark.parametrize(
    "model,example,kwargs,match",
    [
        ("not a module", X, {}, "must be a torch.nn.Module, got str"),
        (Net("gru"), np.zeros((2, 5, 3)), {}, "example must be a torch.Tensor"),
        (Net("gru"), X.double(), {}, "float64.*example.float"),
        (Net("gru"), torch.randn(5), {}, r"\(batch, time, ...\)"),
        (Net("gru"), torch.randn(2, 5, 7), {}, r"\(2, 5, 7\).*Expected 3, got 7"),
        (nn.Linear(3, 2), X, {}, "no nn.RNN/nn.LSTM/nn.GRU layer"),
        (Net("gru"), X, {"backend": "onnxscript"}, "backend must be one of"),
        (Net("gru"), X, {"output_names": ["lengths"]}, "collide"),
        (Net("gru"), X, {"output_names": ["a", "b"]}, "needs 1 distinct names"),
        (Net("rnn"), X, {"backend": "dynamo", "mode": "native"}, "dynamo exporter decomposes"),
        (Twice(), X, {}, "called more than once"),
        (ReturnsState(), X, {}, "flat tuple of tensors, got tuple of Tensor, tuple"),
    ],
    ids=[
        "not_module", "numpy_example", "float64", "rank1", "wrong_features", "no_rnn",
        "backend", "name_collision", "name_count", "dynamo_rnn", "called_twice", "nested",
    ],
)  # fmt: skip
def test_bad_inputs_say_what_to_do(model, example, kwargs, match, tmp_path) -> None:
    with pytest.raises(ExportError, match=match):
        export(model, tmp_path / "bad.onnx", example=example, **kwargs)
