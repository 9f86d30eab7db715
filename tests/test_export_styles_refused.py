"""What cannot stream as written, among the stream styles: refused naming the layer and why
(looks ahead, keeps more past than its state carries, changes its state in the loop),
said by explain too; the ways out (``offline=True``, the fed-back output carried
explicitly) export and run. The styles that stream are in test_export_styles.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_export_support import (
    Net,
    X,
    export_as,
    pool_matches_solo,
    random_frames,
    stream,
    torch_whole,
)
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters import explain, export, verify
from edgeseq.runtime import StreamingPredictor


class _Centered(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.smooth = nn.Conv1d(3, 3, kernel_size=5, padding=2)  # sees t+2
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.smooth(x.transpose(1, 2)).transpose(1, 2))[0]


class _Then(nn.Module):
    """A GRU, then ``after`` over its (batch, time, 4) output."""

    def __init__(self, after: nn.Module, channels_first: bool = False) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.after, self.channels_first = after, channels_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rnn(x)[0]
        if self.channels_first:
            return self.after(y.transpose(1, 2)).transpose(1, 2)
        return self.after(y)


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.mha(y, y, y)[0]


class _MovingAverage(nn.Module):
    """The mean of the last 4 frames, written with unfold (causal, but 3 frames of past)."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.pad(y.transpose(1, 2), (3, 0)).unfold(2, 4, 1).mean(-1).transpose(1, 2)


class _RunningMean(nn.Module):
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(1, y.shape[1] + 1, dtype=y.dtype)[None, :, None]
        return y.cumsum(1) / steps


class _GlobalPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool1d(1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.pool(y.transpose(1, 2))[..., 0]  # (batch, 4): one value per sequence


class _TwiceACell(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 3)
        for t in range(x.shape[1]):
            h = self.cell(self.cell(x[:, t], h), h)
        return h[:, None]


class _NormedLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(3, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, ys = torch.zeros(x.shape[0], 4), []
        for t in range(x.shape[1]):
            h = self.norm(self.cell(x[:, t], h))  # what the cell gets back is not its output
            ys.append(h)
        return torch.stack(ys, 1)


class _Feedback(nn.Module):
    """The previous output fed back as input, held in forward: state edgeseq cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(5, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, y, ys = torch.zeros(x.shape[0], 4), torch.zeros(x.shape[0], 2), []
        for t in range(x.shape[1]):
            h = self.cell(torch.cat([x[:, t], y], -1), h)
            y = self.out(h)
            ys.append(y)
        return torch.stack(ys, 1)


class _FeedbackState(_Feedback):
    """The same, with the fed-back output carried explicitly: streams, but not padded."""

    def forward(self, x: torch.Tensor, state=None):  # type: ignore[override]
        h, y = (
            state if state is not None else (torch.zeros(x.shape[0], 4), torch.zeros(x.shape[0], 2))
        )
        ys = []
        for t in range(x.shape[1]):
            h = self.cell(torch.cat([x[:, t], y], -1), h)
            y = self.out(h)
            ys.append(y)
        return torch.stack(ys, 1), (h, y)


class _NoDefault(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor, state: torch.Tensor):
        return self.rnn(x, state)


class _Strided(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv1d(3, 3, 2, stride=2)
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.down(x.transpose(1, 2)).transpose(1, 2))[0]


REFUSED = [
    ("centered_conv", _Centered(), r"layer 'smooth' \(Conv1d.*looks ahead 2 frames.*offline=True"),
    ("unpadded_conv", _Then(nn.Conv1d(4, 4, 3), True), r"layer 'after' .*looks ahead 2 frames"),
    ("strided_conv", _Strided(), r"layer 'down' \(Conv1d, stride 2 over time\) decimates time"),
    (
        "attention",
        _Then(_SelfAttention()),
        r"'after.mha' \(MultiheadAttention\): it looks into the future.*every later",
    ),
    ("centered_pool", _Then(nn.AvgPool1d(3, 1, 1), True), r"'after' \(AvgPool1d\).*1 later frame"),
    (
        "global_pool",
        _Then(_GlobalPool()),
        r"'after.pool' \(AdaptiveAvgPool1d\): it reduces over time",
    ),
    ("moving_avg", _Then(_MovingAverage()), r"'after'.*keeps more past.*the 3 frames before t"),
    ("running_mean", _Then(_RunningMean()), r"'after'.*keeps more past.*all earlier frames"),
    (
        "cell_twice",
        _TwiceACell(),
        r"cell 'cell' \(GRUCell\) is stepped (\d+) times for \d+ frames; .* once per frame",
    ),
    ("normed_loop", _NormedLoop(), r"cell 'cell' \(GRUCell\): the loop changes its state"),
    ("feedback", _Feedback(), r"code in forward\(\) before 'cell'.*forward\(x, state=None\)"),
    ("no_default", _NoDefault(), r"second argument 'state' without a default"),
]


@pytest.mark.parametrize(
    "model,match", [(m, r) for _, m, r in REFUSED], ids=[n for n, _, _ in REFUSED]
)
def test_what_cannot_stream_is_refused_naming_the_layer(model, match, tmp_path) -> None:
    for mode in ("native", "unrolled"):
        with pytest.raises(ExportError, match=match):
            export_as(model, tmp_path, mode)


def test_fed_back_state_streams_one_step_native_but_not_padded(tmp_path) -> None:
    """Carried explicitly, the fed-back output streams frame by frame (idle rows keep it);
    a padded unrolled chunk would change it after a row's last frame: refused."""
    torch.manual_seed(0)
    model = _FeedbackState().eval()
    path, c = export_as(model, tmp_path, "native+lengths")
    assert c.model.chunk == 1 and c.state_inputs == ["state_in.state.0", "state_in.state.1"]
    x = random_frames(9)
    np.testing.assert_allclose(
        stream(StreamingPredictor(path), x, 4), torch_whole(model, x), atol=1e-5
    )
    pool_matches_solo(path, (1, 4))
    with pytest.raises(ExportError, match=r"state 'state_in.state.1' changes on the padding"):
        export_as(model, tmp_path, "unrolled")


def test_offline_exports_what_cannot_stream(tmp_path) -> None:
    model = _Centered().eval()
    path = tmp_path / "off.onnx"
    c = export(model, path, example=X, offline=True)
    assert not c.states
    x = random_frames(9)
    np.testing.assert_allclose(StreamingPredictor(path).step(x), torch_whole(model, x), atol=1e-5)
    report = verify(model, path)
    assert report.ok(1e-5), report.table()


@pytest.mark.parametrize(
    "model,row,why",
    [
        (_Centered(), "smooth", "looks ahead 2 frames"),
        (_Then(_MovingAverage()), "after", "keeps more past than its state carries"),
        (Net("gru", bidirectional=True), "rnn", "is bidirectional"),
    ],
    ids=["centered", "moving_average", "bidirectional"],
)
def test_explain_says_why_not(model, row, why) -> None:
    report = explain(model, X)
    plan = {p.path: p for p in report.layers}[row]
    assert why in plan.how and not plan.ok
    assert not report.streams and why in (report.reason or "")
    assert "cannot stream:" in report.table()
