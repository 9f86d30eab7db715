"""The unrolled mode: torch's cells in basic ops, a fixed chunk, masking by lengths."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from test_export_support import LAYER, Net, stream, torch_whole
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters import MODES, export, verify
from edgeseq.exporters._cells import UnrolledRunner
from edgeseq.exporters._onnx import op_histogram
from edgeseq.runtime import StreamingPredictor

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections")

RECURRENT = {"LSTM", "GRU", "RNN", "Scan", "Loop"}
VARIANTS = [
    ("lstm", {}),
    ("lstm", {"proj_size": 3}),
    ("gru", {}),
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu"}),
]


def _state(rnn: nn.RNNBase, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    n = rnn.num_layers * (2 if rnn.bidirectional else 1)
    h = torch.randn(n, batch, rnn.proj_size or rnn.hidden_size, generator=g)
    if rnn.mode == "LSTM":
        return h, torch.randn(n, batch, rnn.hidden_size, generator=g)
    return (h,)


@pytest.mark.parametrize("cell,extra", VARIANTS, ids=lambda v: str(v))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cell_equals_torch_and_masks_by_lengths(cell, extra, bias, bidirectional) -> None:
    """Eager: the unrolled runner equals nn.RNN/LSTM/GRU (3 layers, dropout, any layout)."""
    torch.manual_seed(0)
    for batch_first in (True, False):
        rnn = LAYER[cell](
            3, 5, 3, bias=bias, batch_first=batch_first, dropout=0.3,
            bidirectional=bidirectional, **extra,
        ).eval()  # fmt: skip
        x = torch.randn(2, 7, 3) if batch_first else torch.randn(7, 2, 3)
        state = _state(rnn, 2)
        with torch.no_grad():
            want_y, want_s = rnn(x, state if cell == "lstm" else state[0])
            got_y, got_s = UnrolledRunner(rnn, x, state, None)
        want_s = want_s if cell == "lstm" else (want_s,)
        torch.testing.assert_close(got_y, want_y, atol=1e-5, rtol=0)
        for g, w in zip(got_s, want_s):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
        # row 1 has 4 valid frames: its state stops there, its outputs equal a 4-frame run
        lengths = torch.tensor([7, 4], dtype=torch.int32)
        with torch.no_grad():
            got_y, got_s = UnrolledRunner(rnn, x, state, lengths)
            row = x[1:2, :4] if batch_first else x[:4, 1:2]
            s1 = tuple(s[:, 1:2] for s in state)
            want_y, want_s = rnn(row, s1 if cell == "lstm" else s1[0])
        got_row = got_y[1:2, :4] if batch_first else got_y[:4, 1:2]
        torch.testing.assert_close(got_row, want_y, atol=1e-5, rtol=0)
        if not bidirectional:
            want_s = want_s if cell == "lstm" else (want_s,)
            for g, w in zip(got_s, want_s):
                torch.testing.assert_close(g[:, 1:2], w, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_default_chunk_graph_has_only_basic_ops_and_streams(cell, tmp_path) -> None:
    torch.manual_seed(0)
    model = Net(cell, layers=2).eval()
    path = tmp_path / "u.onnx"
    contract = export(model, path, example=torch.randn(1, 5, 3), mode="unrolled")
    chunk = MODES["unrolled"].default_chunk
    assert contract.model.chunk == chunk == 16
    frames = contract.inputs[0]  # batch-first, or time-major as the cells read it
    assert frames.shape[frames.batch_axis] == "batch" and frames.shape[frames.time_axis] == 16
    assert frames.shape[2] == 3
    assert contract.lengths == "lengths"
    ops = op_histogram(onnx.load(str(path)))
    assert not RECURRENT & set(ops), ops
    assert {"lstm": "Sigmoid", "gru": "Sigmoid", "rnn": "Tanh"}[cell] in ops
    x = np.random.default_rng(0).standard_normal((37, 3)).astype(np.float32)
    want = torch_whole(model, x)
    pred = StreamingPredictor(path)
    for k in (1, 3, 7, None):  # 37 frames: never a multiple of the chunk
        np.testing.assert_allclose(stream(pred, x, k), want, atol=1e-5, rtol=0)


class LastFrame(nn.Module):
    """many-to-one the way users write it: the head reads only the last frame."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0][:, -1])


def test_last_frame_output_survives_a_padded_tail(tmp_path) -> None:
    """At padded frames the layer repeats its last valid output, so y[:, -1] stays right."""
    torch.manual_seed(0)
    model = LastFrame().eval()
    path = tmp_path / "last.onnx"
    contract = export(model, path, example=torch.randn(2, 4, 3), mode="unrolled", chunk=4)
    assert contract.outputs[0].time_axis is None
    pred = StreamingPredictor(path)
    x = np.random.default_rng(1).standard_normal((10, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)[None])[0].numpy()
    for k in (1, 3, 10):
        pred.reset()
        for i in range(0, 10, k):
            got = pred.step(x[i : i + k])
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    report = verify(model, path)  # a time-less output: batch rows keep equal lengths
    assert report.ok(1e-5), report.table(per_case=True)
    assert any(d.case.startswith("batch 3, ") for d in report.diffs)


def test_chunk_argument_is_checked(tmp_path) -> None:
    model, x = Net("gru"), torch.randn(2, 5, 3)
    with pytest.raises(ExportError, match="chunk must be a positive int"):
        export(model, tmp_path / "a.onnx", example=x, mode="unrolled", chunk=0)
    with pytest.raises(ExportError, match="does not apply"):
        export(model, tmp_path / "a.onnx", example=x, mode="native", chunk=8)
    with pytest.raises(ExportError, match=r"unknown export mode 'loop'.*native.*unrolled"):
        export(model, tmp_path / "a.onnx", example=x, mode="loop")


def test_unrolled_through_the_dynamo_backend(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net("lstm").eval()
    path = tmp_path / "d.onnx"
    export(model, path, example=torch.randn(2, 4, 3), mode="unrolled", chunk=4, backend="dynamo")
    assert not RECURRENT & set(op_histogram(onnx.load(str(path))))
    x = np.random.default_rng(2).standard_normal((9, 3)).astype(np.float32)
    np.testing.assert_allclose(
        stream(StreamingPredictor(path), x, 2), torch_whole(model, x), atol=1e-5, rtol=0
    )
