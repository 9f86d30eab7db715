"""The stream styles beyond recurrent layers: causal conv caches, cell loops, explicit state.

Each streams chunk by chunk exactly as PyTorch computes the whole sequence, lists its own
state pairs in the contract, and runs through StreamPool and snapshots like any model;
what cannot stream is refused naming the layer and why (test_export_styles_refused.py).
The configuration matrix (test_matrix.py) runs verify() on every style x mode x cell;
this file checks what verify does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from style_models import build
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

from edgeseq.cli import main
from edgeseq.errors import ExportError
from edgeseq.exporters import (
    STYLES,
    Style,
    explain,
    export,
    get_style,
    register_style,
)
from edgeseq.exporters._explicit import flatten, unflatten
from edgeseq.runtime import StreamingPredictor

REPRESENTATIVE = {"conv_cache": "pad_before", "cell_loop": "loop", "explicit_state": "per_layer"}


@pytest.mark.parametrize("mode", ["native", "unrolled"])
@pytest.mark.parametrize("style", sorted(REPRESENTATIVE))
def test_chunked_streaming_equals_pytorch_whole(style, mode, tmp_path) -> None:
    """StreamingPredictor in chunkings {1, 3, 7, whole} vs PyTorch on the whole sequence."""
    model = build(style, "lstm", REPRESENTATIVE[style])
    path, _ = export_as(model, tmp_path, mode)
    x = random_frames()
    want = torch_whole(model, x)
    pred = StreamingPredictor(path)
    for k in (1, 3, 7, None):
        np.testing.assert_allclose(stream(pred, x, k), want, atol=1e-5, rtol=0)


def test_conv_cache_pairs_in_the_contract(tmp_path) -> None:
    _, c = export_as(build("conv_cache", "gru", "between"), tmp_path, "native")
    # registration order; 'between' does not call its front-end, which carries nothing
    assert c.state_inputs == ["state_in.rnn.h", "state_in.mid.conv.cache", "state_in.rnn2.h"]
    mid = c.states[1]
    assert (mid.shape, mid.batch_axis, mid.init) == (["batch", 5, 1], 0, "zeros")
    assert c.lengths is None  # native's default: every row of a call has all its frames
    _, c = export_as(build("conv_cache", "gru", "between"), tmp_path, "native", lengths=True)
    assert c.lengths == "lengths"  # then the cache keeps each row's last valid frames
    _, c = export_as(build("conv_cache", "lstm", "pad_before"), tmp_path, "unrolled")
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
    _, c = export_as(build("cell_loop", "lstm", "stacked"), tmp_path, "native")
    assert c.state_inputs == [
        "state_in.cell.h",
        "state_in.cell.c",
        "state_in.cell2.h",
        "state_in.cell2.c",
    ]
    assert all(s.shape == [1, "batch", 5] and s.batch_axis == 1 for s in c.states)
    assert c.model.chunk == 1 and c.model.cell == "lstm"  # one step of the loop per call
    assert c.inputs[0].shape == ["batch", 1, 3]
    _, c = export_as(build("cell_loop", "gru", "loop"), tmp_path, "unrolled")
    assert c.model.chunk == 5 and c.state_inputs == ["state_in.cell.h"]


def test_explicit_state_pairs_named_after_their_place(tmp_path) -> None:
    _, c = export_as(build("explicit_state", "lstm", "per_layer"), tmp_path, "native")
    assert c.state_inputs == [f"state_in.state.{i}.{j}" for i in (0, 1) for j in (0, 1)]
    assert c.state_outputs[0] == "state_out.state.0.0"
    assert [o.name for o in c.data_outputs()] == ["y"]
    _, c = export_as(build("explicit_state", "gru", "dict"), tmp_path, "native")
    assert c.state_inputs == ["state_in.state.enc", "state_in.state.dec"]
    _, c = export_as(build("explicit_state", "gru", "layer"), tmp_path, "native")
    assert c.state_inputs == ["state_in.state"]  # a lone tensor
    model = build("explicit_state", "rnn", "learned")
    _, c = export_as(model, tmp_path, "native")
    np.testing.assert_allclose(c.states[0].init, model.h0.detach().reshape(-1), rtol=1e-6)


def test_explicit_state_round_trip_of_structures() -> None:
    t = torch.zeros(1)
    tree = [{"h": t, "c": (t, t)}, t]
    _, names, spec = flatten(tree)  # type: ignore[misc]
    assert names == ["0.h", "0.c.0", "0.c.1", "1"]
    rebuilt = unflatten([torch.full((1,), float(i)) for i in range(4)], spec)
    assert float(rebuilt[0]["c"][1]) == 2.0 and isinstance(rebuilt[0]["c"], tuple)
    assert flatten([t, "not a tensor"]) is None


@pytest.mark.parametrize("mode", ["native", "native+lengths", "unrolled"])
@pytest.mark.parametrize("kind", ["plain", "conv_cache"])
def test_pool_and_snapshots_on_a_conv_cache_model_as_on_a_plain_one(kind, mode, tmp_path) -> None:
    torch.manual_seed(0)
    model = Net("lstm") if kind == "plain" else build("conv_cache", "lstm", "pad_before")
    path, c = export_as(model, tmp_path, mode)
    assert any(s.endswith(".cache") for s in c.state_inputs) is (kind == "conv_cache")
    pool_matches_solo(path, (0, 8))


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
