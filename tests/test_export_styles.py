"""The stream styles beyond recurrent layers: causal conv caches, cell loops, explicit state.

Each streams chunk by chunk exactly as PyTorch computes the whole sequence, lists its own
state pairs in the contract, runs through StreamPool and snapshots like any model, and
what cannot stream is refused naming the layer and why (looks ahead, or keeps more past
than its state carries). The configuration matrix (test_matrix.py) runs verify() on every
style x mode x cell; this file checks what verify does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from style_models import build
from test_export_support import Net, stream, torch_whole
from torch import nn

from edgeseq.cli import main
from edgeseq.errors import ExportError
from edgeseq.exporters import (
    STYLES,
    Style,
    explain,
    export,
    get_style,
    register_style,
    verify,
)
from edgeseq.exporters._explicit import flatten, unflatten
from edgeseq.runtime import StreamingPredictor, StreamPool

X = torch.randn(2, 6, 3)
REPRESENTATIVE = {"conv_cache": "pad_before", "cell_loop": "loop", "explicit_state": "per_layer"}


def _frames(n: int = 23, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3)).astype(np.float32)


def _export(model: nn.Module, tmp_path, mode: str, **kw):
    """``mode`` "native+lengths" is native with a lengths input (ragged rows in one call)."""
    path = tmp_path / "m.onnx"
    chunk = 5 if mode == "unrolled" else None
    if mode == "native+lengths":
        mode, kw = "native", {**kw, "lengths": True}
    return path, export(model, path, example=X, mode=mode, chunk=chunk, **kw)


@pytest.mark.parametrize("mode", ["native", "unrolled"])
@pytest.mark.parametrize("style", sorted(REPRESENTATIVE))
def test_chunked_streaming_equals_pytorch_whole(style, mode, tmp_path) -> None:
    """StreamingPredictor in chunkings {1, 3, 7, whole} vs PyTorch on the whole sequence."""
    model = build(style, "lstm", REPRESENTATIVE[style])
    path, _ = _export(model, tmp_path, mode)
    x = _frames()
    want = torch_whole(model, x)
    pred = StreamingPredictor(path)
    for k in (1, 3, 7, None):
        np.testing.assert_allclose(stream(pred, x, k), want, atol=1e-5, rtol=0)


def test_conv_cache_pairs_in_the_contract(tmp_path) -> None:
    _, c = _export(build("conv_cache", "gru", "between"), tmp_path, "native")
    # registration order; 'between' does not call its front-end, which carries nothing
    assert c.state_inputs == ["state_in.rnn.h", "state_in.mid.conv.cache", "state_in.rnn2.h"]
    mid = c.states[1]
    assert (mid.shape, mid.batch_axis, mid.init) == (["batch", 5, 1], 0, "zeros")
    assert c.lengths is None  # native's default: every row of a call has all its frames
    _, c = _export(build("conv_cache", "gru", "between"), tmp_path, "native", lengths=True)
    assert c.lengths == "lengths"  # then the cache keeps each row's last valid frames
    _, c = _export(build("conv_cache", "lstm", "pad_before"), tmp_path, "unrolled")
    shapes = {s.input: s.shape for s in c.states}
    assert shapes == {
        "state_in.front.0.conv.cache": ["batch", 3, 2],  # kernel 3: 2 frames
        "state_in.front.2.conv.cache": ["batch", 4, 4],  # kernel 3, dilation 2: 4 frames
        "state_in.rnn.h": [1, "batch", 5],
        "state_in.rnn.c": [1, "batch", 5],
    }
    streamed = {s["path"]: s for s in c.model.extra["streamed"]}
    assert streamed["front.2.conv"]["cache_frames"] == 4
    assert streamed["front.2.conv"]["style"] == "conv_cache"


def test_cell_loop_pairs_and_one_step_native_graph(tmp_path) -> None:
    _, c = _export(build("cell_loop", "lstm", "stacked"), tmp_path, "native")
    assert c.state_inputs == [
        "state_in.cell.h",
        "state_in.cell.c",
        "state_in.cell2.h",
        "state_in.cell2.c",
    ]
    assert all(s.shape == [1, "batch", 5] and s.batch_axis == 1 for s in c.states)
    assert c.model.chunk == 1 and c.model.cell == "lstm"  # one step of the loop per call
    assert c.inputs[0].shape == ["batch", 1, 3]
    _, c = _export(build("cell_loop", "gru", "loop"), tmp_path, "unrolled")
    assert c.model.chunk == 5 and c.state_inputs == ["state_in.cell.h"]


def test_explicit_state_pairs_named_after_their_place(tmp_path) -> None:
    _, c = _export(build("explicit_state", "lstm", "per_layer"), tmp_path, "native")
    assert c.state_inputs == [f"state_in.state.{i}.{j}" for i in (0, 1) for j in (0, 1)]
    assert c.state_outputs[0] == "state_out.state.0.0"
    assert [o.name for o in c.data_outputs()] == ["y"]
    _, c = _export(build("explicit_state", "gru", "dict"), tmp_path, "native")
    assert c.state_inputs == ["state_in.state.enc", "state_in.state.dec"]
    _, c = _export(build("explicit_state", "gru", "layer"), tmp_path, "native")
    assert c.state_inputs == ["state_in.state"]  # a lone tensor
    model = build("explicit_state", "rnn", "learned")
    _, c = _export(model, tmp_path, "native")
    np.testing.assert_allclose(c.states[0].init, model.h0.detach().reshape(-1), rtol=1e-6)


def test_explicit_state_round_trip_of_structures() -> None:
    t = torch.zeros(1)
    tree = [{"h": t, "c": (t, t)}, t]
    _, names, spec = flatten(tree)  # type: ignore[misc]
    assert names == ["0.h", "0.c.0", "0.c.1", "1"]
    rebuilt = unflatten([torch.full((1,), float(i)) for i in range(4)], spec)
    assert float(rebuilt[0]["c"][1]) == 2.0 and isinstance(rebuilt[0]["c"], tuple)
    assert flatten([t, "not a tensor"]) is None


def _pool_matches_solo(path, frames_per_call, seed=1) -> None:
    """Ragged pool steps == separate predictors; snapshots resume exactly, in and out."""
    rng = np.random.default_rng(seed)
    pool = StreamPool(path, max_streams=6)
    ids = [pool.open() for _ in range(4)]
    solo = {i: StreamingPredictor(path) for i in ids}
    for _ in range(6):
        req = {i: _frames(int(rng.integers(*frames_per_call)), int(rng.integers(1e6))) for i in ids}
        req = {i: f for i, f in req.items() if len(f) and rng.random() < 0.8} or {
            ids[0]: _frames(2)
        }
        out = pool.step(req)
        for i, f in req.items():
            np.testing.assert_allclose(out[i], solo[i].step(f), rtol=0, atol=1e-6)
    a = ids[0]
    snap = pool.snapshot(a)
    f = _frames(4, 9)
    after = pool.step({a: f})[a]
    pool.restore(a, snap)
    np.testing.assert_array_equal(pool.step({a: f})[a], after)
    p = StreamingPredictor(path)
    p.restore(pool.snapshot(a).to_bytes())  # the stream continues outside the pool
    g = _frames(3, 10)
    np.testing.assert_allclose(p.step(g), pool.step({a: g})[a], rtol=0, atol=1e-6)
    for k, v in pool.snapshot(ids[1]).states.items():
        np.testing.assert_allclose(v, solo[ids[1]].state[k], rtol=0, atol=1e-6)
    if StreamingPredictor(path).contract.lengths is None:
        return  # rows of one call all have the same frames: no idle rows to keep
    resident = StreamPool(path, max_streams=4, resident=True)  # idle rows get zero frames
    r_ids = [resident.open() for _ in range(3)]
    r_solo = {i: StreamingPredictor(path) for i in r_ids}
    for step in range(4):
        req = {i: _frames(2 + step, step) for i in r_ids if (i + step) % 2}
        out = resident.step(req)
        for i, f in req.items():
            np.testing.assert_allclose(out[i], r_solo[i].step(f), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["native", "native+lengths", "unrolled"])
@pytest.mark.parametrize("kind", ["plain", "conv_cache"])
def test_pool_and_snapshots_on_a_conv_cache_model_as_on_a_plain_one(kind, mode, tmp_path) -> None:
    torch.manual_seed(0)
    model = Net("lstm") if kind == "plain" else build("conv_cache", "lstm", "pad_before")
    path, c = _export(model, tmp_path, mode)
    assert any(s.endswith(".cache") for s in c.state_inputs) is (kind == "conv_cache")
    _pool_matches_solo(path, (0, 8))


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
            _export(model, tmp_path, mode)


def test_fed_back_state_streams_one_step_native_but_not_padded(tmp_path) -> None:
    """Carried explicitly, the fed-back output streams frame by frame (idle rows keep it);
    a padded unrolled chunk would change it after a row's last frame: refused."""
    torch.manual_seed(0)
    model = _FeedbackState().eval()
    path, c = _export(model, tmp_path, "native+lengths")
    assert c.model.chunk == 1 and c.state_inputs == ["state_in.state.0", "state_in.state.1"]
    x = _frames(9)
    np.testing.assert_allclose(
        stream(StreamingPredictor(path), x, 4), torch_whole(model, x), atol=1e-5
    )
    _pool_matches_solo(path, (1, 4))
    with pytest.raises(ExportError, match=r"state 'state_in.state.1' changes on the padding"):
        _export(model, tmp_path, "unrolled")


def test_offline_exports_what_cannot_stream(tmp_path) -> None:
    model = _Centered().eval()
    path = tmp_path / "off.onnx"
    c = export(model, path, example=X, offline=True)
    assert not c.states
    x = _frames(9)
    np.testing.assert_allclose(StreamingPredictor(path).step(x), torch_whole(model, x), atol=1e-5)
    report = verify(model, path)
    assert report.ok(1e-5), report.table()


def test_proj_size_exported_the_way_that_works_when_no_mode_is_asked(tmp_path) -> None:
    model = Net("lstm", proj_size=2, layers=2)
    c = export(model, tmp_path / "p.onnx", example=X)
    assert c.model.mode == "unrolled" and c.model.chunk == 16
    assert (
        "proj_size=2" in c.model.extra["mode_note"] and "'unrolled'" in c.model.extra["mode_note"]
    )
    with pytest.raises(ExportError, match=r"proj_size=2.*leave the mode unset"):
        export(model, tmp_path / "p.onnx", example=X, mode="native")
    assert export(Net("gru"), tmp_path / "g.onnx", example=X).model.mode == "native"


def test_explain_says_per_layer_how_it_streams() -> None:
    report = explain(build("conv_cache", "gru", "pad_before"), X)
    rows = {p.path: p for p in report.layers}
    assert report.streams and report.mode == "native" and report.reason is None
    assert rows["front.2.conv"].how.startswith("conv cache: the last 4 frames")
    assert rows["front.2.conv"].state == "cache (batch, 4, 4)"
    assert rows["rnn"].how == "native ONNX GRU op" and rows["rnn"].state == "h (1, batch, 5)"
    assert rows["head"].how == "per frame: stateless"
    assert "state_in.front.0.conv.cache" in report.states
    assert "conv cache" in report.table() and "streams: 3 state pair(s)" in str(report)
    cells = explain(build("cell_loop", "lstm", "loop"), X, mode="unrolled", chunk=4)
    rows = {p.path: p for p in cells.layers}
    assert rows["cell"].how.startswith("cell loop: each step's LSTM cell in basic ops")
    assert rows["head"].how.startswith("per step, inside the time loop")
    assert cells.chunk == 4 and cells.streams
    assert explain(build("cell_loop", "gru", "loop"), X).chunk == 1
    explicit = explain(build("explicit_state", "lstm", "layer"), X)
    assert explicit.layers[0].path == "forward(state)"
    assert explicit.layers[0].state == "state.0 (1, batch, 5), state.1 (1, batch, 5)"
    proj = explain(Net("lstm", proj_size=2), X)
    assert proj.mode == "unrolled" and "proj_size=2" in proj.notes[0]


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


def test_cli_explain(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    base = ["export", "--example-shape", "2,6,3", "--explain", "--factory"]
    res = runner.invoke(main, [*base, "style_models:build_conv"])
    assert res.exit_code == 0, res.output
    assert (
        "conv cache: the last 4 frames" in res.output and "streams: 3 state pair(s)" in res.output
    )
    assert not list(tmp_path.iterdir())  # --explain writes nothing
    res = runner.invoke(main, [*base, "style_models:build_centered"])
    assert res.exit_code == 1 and "looks ahead 2 frames" in res.output
    proj = ["--factory", "style_models:build_proj", "--example-shape", "2,6,3", "-o", "p.onnx"]
    res = runner.invoke(main, ["export", *proj])
    assert res.exit_code == 0, res.output
    assert "note: layer '1.layer' is an LSTM with proj_size=2" in res.output
    assert "exported in mode 'unrolled' instead" in res.output
    res = runner.invoke(main, ["export", "--factory", "style_models:build_conv"])
    assert res.exit_code != 0 and "-o/--out" in res.output
    from edgeseq.train.checkpoint import save_checkpoint
    from edgeseq.train.models import SeqConfig, SeqModel

    save_checkpoint("m.pt", SeqModel(SeqConfig(cell="gru", input_size=2, hidden_size=4)))
    res = runner.invoke(main, ["export", "m.pt", "--explain"])
    assert res.exit_code == 0, res.output
    assert "SeqModel: mode 'native'" in res.output and "native ONNX GRU op" in res.output


def test_style_registry_guards() -> None:
    assert get_style("conv_cache").modules == (nn.Conv1d, nn.Conv2d)
    with pytest.raises(ExportError, match="already registered"):
        register_style(STYLES["cell_loop"])
    with pytest.raises(ExportError, match=r"claims \['GRU'\], already 'recurrent'"):
        register_style(Style("mine", (nn.GRU,), None, "", "", ""))
    with pytest.raises(ExportError, match=r"registered: .*conv_cache"):
        get_style("attention")
