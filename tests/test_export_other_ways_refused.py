"""User models written other ways that cannot stream: each is refused in both modes,
naming its layer and the way out (the forms found this way, beside the style tests' own:
attention with a causal mask, a norm over time, reused or state-changing layers, centered
or non-zero padding). The ones that stream are in test_export_other_ways.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_export_support import X
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters import export


class _Pooled(nn.Module):
    def __init__(self, mid: nn.Module) -> None:
        super().__init__()
        self.front, self.mid = nn.Linear(3, 4), mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.mid(torch.tanh(self.front(x)))
        return z[0] if isinstance(z, tuple) else z


class _SameConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frontend = nn.Conv1d(3, 4, 3, padding="same")
        self.lstm = nn.LSTM(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.frontend(x.transpose(1, 2)).transpose(1, 2))[0]


class _CenteredConv2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.spec = nn.Conv2d(1, 2, 3, padding=1)
        self.gru = nn.GRU(6, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.spec(x.unsqueeze(1))
        b, c, t, f = z.shape
        return self.gru(z.permute(0, 2, 1, 3).reshape(b, t, c * f))[0]


class _DilatedCenteredAfter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.post = nn.Conv1d(4, 4, 3, dilation=3, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.lstm(x)[0].transpose(1, 2)).transpose(1, 2)


class _ReplicatePad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.gru = nn.Conv1d(3, 4, 3), nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.pad(x.transpose(1, 2), (2, 0), mode="replicate")
        return self.gru(self.conv(z).transpose(1, 2))[0]


class _SteppedHalved(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, ys = None, []
        for t in range(x.shape[1]):
            y, (h, c) = self.lstm(x[:, t : t + 1], state)
            state = (h * 0.5, c)  # not what the layer returned
            ys.append(y)
        return torch.cat(ys, 1)


class _Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(self.gru(x)[0])[0]  # one layer's weights used twice over the sequence


class _CausalAttention(nn.Module):
    """Self-attention masked to the past after a GRU: causal, but it needs every earlier
    frame (a key/value cache), which no state here carries."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.att = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gru(x)[0]
        mask = torch.triu(torch.ones(y.shape[1], y.shape[1], dtype=torch.bool), 1)
        return self.att(y, y, y, attn_mask=mask)[0]


class _GroupNormOverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv1d(3, 4, 1), nn.GroupNorm(1, 4)
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(self.norm(self.conv(x.transpose(1, 2))).transpose(1, 2))[0]


REFUSED = {
    "causal_attention": (  # its mask is a keyword argument: probed alone, cut alike
        _CausalAttention,
        r"'att' \(MultiheadAttention\): it is causal but keeps more past.*all earlier frames",
    ),
    "group_norm_over_time": (
        _GroupNormOverTime,
        r"'norm' \(GroupNorm\): it looks into the future.*offline=True",
    ),
    "bidirectional_lstm": (
        lambda: _Pooled(nn.LSTM(4, 5, batch_first=True, bidirectional=True)),
        r"layer 'mid' is bidirectional.*later frames.*offline=True.*unidirectional",
    ),
    "same_conv": (
        _SameConv,
        r"layer 'frontend' \(Conv1d.*looks ahead 1 frame.*offline=True.*F\.pad\(x, \(2, 0\)\)",
    ),
    "centered_conv2d": (
        _CenteredConv2d,
        r"layer 'spec' \(Conv2d.*looks ahead 1 frame.*F\.pad\(x, \(0, 0, 2, 0\)\)",
    ),
    "dilated_centered_after": (
        _DilatedCenteredAfter,
        r"layer 'post' \(Conv1d, kernel 3, dilation 3.*looks ahead 3 frames.*padding=6",
    ),
    "replicate_pad": (_ReplicatePad, r"layer 'conv' \(Conv1d\).*not zeros.*F\.pad\(x, \(2, 0\)\)"),
    "stepped_state_changed": (
        _SteppedHalved,
        r"layer 'lstm' \(LSTM\) is stepped once per frame, but the loop changes its state"
        r".*forward\(x, state=None\)",
    ),
    "layer_reused": (
        _Reused,
        r"layer 'gru' \(GRU\) is called more than once.*once on the whole sequence"
        r".*once per frame feeding back its state",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_naming_the_layer_and_what_to_do(name, tmp_path) -> None:
    build, match = REFUSED[name]
    for mode in ("native", "unrolled"):
        with pytest.raises(ExportError, match=match):
            export(build(), tmp_path / "m.onnx", example=X, mode=mode)
