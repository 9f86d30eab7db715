"""User models written other ways than the style tests' own: each streams with chunked
parity against PyTorch on the whole sequence, or is refused naming its layer and the way
out. (The shared mechanism, not the listed examples: these were not written for it.)
Among them the forms found this way: state over several arguments, a layer stepped once
per frame (a seq2seq decoder), a hand-written recurrence traced into a fixed frame count.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_export_support import X, stream, torch_whole
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters import explain, export, verify
from edgeseq.runtime import StreamingPredictor


class UnbindGRUCell(nn.Module):
    """A GRUCell over ``x.unbind(1)``, h from ``x.new_zeros``, outputs cat'ed from a list."""

    def __init__(self) -> None:
        super().__init__()
        self.cell, self.out = nn.GRUCell(3, 5), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, ys = x.new_zeros(x.size(0), self.cell.hidden_size), []
        for x_t in x.unbind(dim=1):
            h = self.cell(x_t, h)
            ys.append(self.out(h).unsqueeze(1))
        return torch.cat(ys, dim=1)


class NoneLSTMCell(nn.Module):
    """An LSTMCell started from ``hx=None``, time-major inside, a list stacked at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.cell, self.out = nn.LSTMCell(3, 5), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hx, hs = None, []
        for x_t in x.permute(1, 0, 2):
            hx = self.cell(x_t, hx)
            hs.append(hx[0])
        return self.out(torch.stack(hs)).permute(1, 0, 2)


class DilatedConvLSTM(nn.Module):
    """Causal Conv1d (kernel 3, dilation 2, stride 1, F.pad on the left) into an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 8, kernel_size=3, dilation=2)
        self.lstm, self.fc = nn.LSTM(8, 6, batch_first=True), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.conv(F.pad(x.transpose(1, 2), (4, 0)))).transpose(1, 2)
        return self.fc(self.lstm(z)[0])


class Chomp(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :, : -self.n].contiguous()


class ChompTCN(nn.Module):
    """The TCN paper's block: weight-normed convs padded (k-1)*d, chomped, residual 1x1."""

    def __init__(self) -> None:
        super().__init__()
        blocks, c_in = [], 3
        for d in (1, 2):
            conv = nn.utils.parametrizations.weight_norm(
                nn.Conv1d(c_in, 6, 3, padding=2 * d, dilation=d)
            )
            blocks += [nn.Sequential(conv, Chomp(2 * d), nn.ReLU())]
            c_in = 6
        self.net, self.down = nn.Sequential(*blocks), nn.Conv1d(3, 6, 1)
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.transpose(1, 2)
        return self.gru(F.relu(self.net(z) + self.down(z)).transpose(1, 2))[0]


class CausalConv2dCRN(nn.Module):
    """A CRN front-end: Conv2d over (time, freq), time padded on the left, then an LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=(2, 3), padding=(0, 1))
        self.lstm = nn.LSTM(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.elu(self.conv(F.pad(x.unsqueeze(1), (0, 0, 1, 0))))  # (batch, 2, time, 3)
        b, c, t, f = z.shape
        return self.lstm(z.permute(0, 2, 1, 3).reshape(b, t, c * f))[0]


class HiddenTuple(nn.Module):
    """``forward(x, hidden=None) -> (y, (h, c))`` around a two-layer LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.fc = nn.LSTM(3, 5, num_layers=2, batch_first=True), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor, hidden=None):
        out, (h, c) = self.lstm(x, hidden)
        return self.fc(out), (h, c)


class CellsWithStateList(nn.Module):
    """Two stacked LSTMCells stepped in a loop, their states a list of (h, c) in the signature."""

    def __init__(self) -> None:
        super().__init__()
        self.cells = nn.ModuleList([nn.LSTMCell(3, 5), nn.LSTMCell(5, 5)])
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor, states=None):
        if states is None:
            zeros = torch.zeros(x.shape[0], 5)
            states = [(zeros, zeros) for _ in self.cells]
        ys = []
        for t in range(x.shape[1]):
            inp, new = x[:, t], []
            for cell, st in zip(self.cells, states):
                inp, c = cell(inp, st)
                new.append((inp, c))
            states = new
            ys.append(self.fc(inp))
        return torch.stack(ys, 1), states


class SeparateHC(nn.Module):
    """The state spread over two arguments: ``forward(x, h=None, c=None) -> (y, h, c)``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)

    def forward(self, x: torch.Tensor, h=None, c=None):
        y, (h, c) = self.lstm(x, None if h is None else (h, c))
        return y, h, c


class SteppedLayer(nn.Module):
    """An nn.LSTM stepped one frame at a time, its state carried in the signature."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)

    def forward(self, x: torch.Tensor, state=None):
        ys = []
        for t in range(x.shape[1]):
            y, state = self.lstm(x[:, t : t + 1], state)
            ys.append(y)
        return torch.cat(ys, 1), state


class SteppedDecoder(nn.Module):
    """A seq2seq decoder's loop: a sequence-first GRU stepped per frame, hidden fed back."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.gru, self.out = nn.Linear(3, 4), nn.GRU(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, outs = torch.zeros(1, x.shape[0], 4), []
        for i in range(x.size(1)):
            o, hidden = self.gru(F.relu(self.emb(x[:, i])).unsqueeze(0), hidden)
            outs.append(self.out(o[0]))
        return torch.stack(outs, 1)


class HandRNN(nn.Module):
    """A hand-written recurrence (no nn layer or cell) carried in ``forward(x, h=None)``."""

    def __init__(self) -> None:
        super().__init__()
        self.w, self.u = nn.Linear(3, 4), nn.Linear(4, 4, bias=False)

    def forward(self, x: torch.Tensor, h=None):
        h = torch.zeros(x.shape[0], 4) if h is None else h
        ys = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.w(x[:, t]) + self.u(h))
            ys.append(h)
        return torch.stack(ys, 1), h


STREAMS = {
    # name: (model, state inputs, modes)
    "unbind_grucell": (UnbindGRUCell, ["state_in.cell.h"], ("native", "unrolled")),
    "none_lstmcell": (NoneLSTMCell, ["state_in.cell.h", "state_in.cell.c"], ("native",)),
    "dilated_conv_lstm": (
        DilatedConvLSTM,
        ["state_in.conv.cache", "state_in.lstm.h", "state_in.lstm.c"],
        ("native", "unrolled"),
    ),
    "chomp_tcn": (
        ChompTCN,
        ["state_in.net.0.0.cache", "state_in.net.1.0.cache", "state_in.gru.h"],
        ("native", "unrolled"),
    ),
    "conv2d_crn": (
        CausalConv2dCRN,
        ["state_in.conv.cache", "state_in.lstm.h", "state_in.lstm.c"],
        ("native",),
    ),
    "hidden_tuple": (HiddenTuple, ["state_in.hidden.0", "state_in.hidden.1"], ("native",)),
    "cells_state_list": (
        CellsWithStateList,
        [f"state_in.states.{i}.{j}" for i in (0, 1) for j in (0, 1)],
        ("native", "unrolled"),
    ),
    "separate_h_c": (SeparateHC, ["state_in.h", "state_in.c"], ("native", "unrolled")),
    "stepped_layer_state": (
        SteppedLayer,
        ["state_in.state.0", "state_in.state.1"],
        ("native", "unrolled"),
    ),
    "stepped_decoder": (SteppedDecoder, ["state_in.gru.h"], ("native", "unrolled")),
    "hand_rnn": (HandRNN, ["state_in.h"], ("native",)),
}


@pytest.mark.parametrize(
    "name,mode", [(n, m) for n, (_, _, modes) in STREAMS.items() for m in modes]
)
def test_streams_with_chunked_parity(name, mode, tmp_path) -> None:
    build, states, _ = STREAMS[name]
    torch.manual_seed(0)
    model = build().eval()
    path = tmp_path / "m.onnx"
    c = export(model, path, example=X, mode=mode, chunk=5 if mode == "unrolled" else None)
    assert [v.name for v in c.state_views()] == states  # a layered state may travel per layer
    x = np.random.default_rng(0).standard_normal((17, 3)).astype(np.float32)
    want = torch_whole(model, x)
    pred = StreamingPredictor(path)
    for k in (1, 3, 7, None):
        got = stream(pred, x, k)
        got = got[next(iter(got))] if isinstance(got, dict) else got
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    if name in VERIFIED:  # batch 1 and 3 with rows of different lengths, final states too
        report = verify(model, path)
        assert report.ok(1e-5), report.table()


VERIFIED = {"separate_h_c", "stepped_layer_state", "stepped_decoder", "hand_rnn"}


@pytest.mark.parametrize("name", ["separate_h_c", "stepped_decoder"])
def test_dynamo_backend_too(name, tmp_path) -> None:
    build, states, _ = STREAMS[name]
    torch.manual_seed(0)
    model = build().eval()
    path = tmp_path / "m.onnx"
    c = export(model, path, example=X, mode="native", backend="dynamo")
    assert [v.name for v in c.state_views()] == states
    x = np.random.default_rng(1).standard_normal((11, 3)).astype(np.float32)
    pred = StreamingPredictor(path)
    for k in (1, 3, None):
        np.testing.assert_allclose(stream(pred, x, k), torch_whole(model, x), atol=1e-5, rtol=0)


def test_a_layer_stepped_per_frame_is_one_step_per_call(tmp_path) -> None:
    c = export(SteppedDecoder().eval(), tmp_path / "d.onnx", example=X, mode="native")
    assert c.model.chunk == 1 and c.inputs[0].shape == ["batch", 1, 3]
    assert c.model.extra["streamed"][0]["stepped"] is True
    rows = {p.path: p for p in explain(SteppedDecoder(), X).layers}
    assert rows["gru"].how.startswith("stepped per frame: one step per graph call")
    c = export(SteppedDecoder().eval(), tmp_path / "u.onnx", example=X, mode="unrolled", chunk=4)
    assert c.model.chunk == 4 and c.lengths == "lengths"  # padded steps keep the state


def test_a_python_loop_over_time_outside_layers_is_one_frame_per_call(tmp_path) -> None:
    """Tracing unrolls the loop into the example's frame count: the graph would refuse
    any other. export finds it by running the graph on a longer sequence and writes one
    step of the loop instead, saying so; offline (whole sequences) it refuses."""
    torch.manual_seed(0)
    c = export(HandRNN().eval(), tmp_path / "s.onnx", example=X, mode="native")
    assert c.model.chunk == 1 and c.inputs[0].shape == ["batch", 1, 3]
    assert "loops over time in Python" in c.model.extra["mode_note"]
    with pytest.raises(ExportError, match=r"runs only the example's 6 frames.*loops over time"):
        export(HandRNN().eval(), tmp_path / "o.onnx", example=X, offline=True)
    # a model without such a loop keeps its any-length graph, and no note
    c = export(HiddenTuple().eval(), tmp_path / "h.onnx", example=X)
    assert c.model.chunk is None and "mode_note" not in c.model.extra


class LastState(nn.Module):
    """Many-to-one: a cell loop that returns only its last output (a sequence classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.cell, self.out = nn.GRUCell(3, 5), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 5)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.out(h)


@pytest.mark.parametrize("mode", ["native", "unrolled"])
def test_many_to_one_gives_the_answer_so_far_per_call(mode, tmp_path) -> None:
    torch.manual_seed(0)
    model = LastState().eval()
    path = tmp_path / "m.onnx"
    c = export(model, path, example=X, mode=mode, chunk=5 if mode == "unrolled" else None)
    assert c.outputs[0].shape == ["batch", 2] and c.outputs[0].time_axis is None
    x = np.random.default_rng(0).standard_normal((17, 3)).astype(np.float32)
    pred = StreamingPredictor(path)
    for k in (1, 3, 7, 17):
        pred.reset()
        for i in range(0, len(x), k):
            got = pred.step(x[i : i + k])  # the model's output on every frame so far
            with torch.no_grad():
                want = model(torch.from_numpy(x[: i + k])[None])[0].numpy()
            np.testing.assert_allclose(got.reshape(-1), want, atol=1e-5, rtol=0)


def test_explain_names_separate_state_arguments() -> None:
    report = explain(SeparateHC(), X)
    assert report.streams and report.states == ["state_in.h", "state_in.c"]
    row = report.layers[0]
    assert row.path == "forward(h, c)"
    assert row.state == "h (1, batch, 5), c (1, batch, 5)"
