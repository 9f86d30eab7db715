"""The configurations users have, x every export mode: export, verify, refuse what must be.

Every registered stream style (recurrent layers, conv caches, cell loops, explicit state;
``edgeseq.exporters.STYLES``) has its own configurations. One test fails when a
registered mode, style or a supported cell has no case here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from style_models import CONFIGS as STYLE_CONFIGS
from style_models import build
from test_export_support import FEATURES, Net

from edgeseq.errors import ExportError
from edgeseq.exporters import MODES, STYLES, export, verify
from edgeseq.train.models import CELLS

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections")

CHUNK = 4  # unrolled graphs: small, and verify's 11-frame sequences end in a padded tail


@dataclass(frozen=True)
class Case:
    config: str
    cell: str
    mode: str
    kwargs: dict = field(default_factory=dict)
    offline: bool = False
    backend: str = "torchscript"
    refused: str | None = None  # a fragment the ExportError must contain
    lengths: bool | None = None  # None: the mode's default
    style: str = "recurrent"
    ask_mode: bool = True  # False: export picks the mode itself (mode=None) -> self.mode

    @property
    def id(self) -> str:
        extra = "-dynamo" if self.backend == "dynamo" else ""
        extra += "-lengths" if self.lengths else ""
        auto = "" if self.ask_mode else "auto-"
        style = "" if self.style == "recurrent" else f"{self.style}-"
        return f"{auto}{self.mode}{extra}-{style}{self.cell}-{self.config}"


CONFIGS: dict[str, dict] = {
    "layers1": {"layers": 1},
    "layers2": {"layers": 2},
    "layers3": {"layers": 3},
    "seq_first": {"batch_first": False, "layers": 2},
    "no_bias": {"bias": False},
    "dropout": {"layers": 2, "dropout": 0.3},
    "user_init": {"init": True, "layers": 2},
    "user_init_seq_first": {"init": True, "batch_first": False},
    "bidirectional": {"bidirectional": True, "layers": 2},
    "packed": {"packed": True},
}


def _cases() -> list[Case]:
    cases = []
    for mode in MODES:
        for cell in CELLS:
            for name, kw in CONFIGS.items():
                cases.append(
                    Case(
                        name,
                        cell,
                        mode,
                        kw,
                        offline=name == "bidirectional",
                        refused="PackedSequence" if name == "packed" else None,
                    )
                )
        cases.append(Case("relu", "rnn", mode, {"nonlinearity": "relu", "layers": 2}))
        cases.append(
            Case(
                "proj_size",
                "lstm",
                mode,
                {"proj_size": 3, "layers": 2},
                refused="proj_size" if mode == "native" else None,
            )
        )
    for cell in CELLS:  # native graphs with lengths wired to sequence_lens (opt-in)
        for name in ("layers2", "seq_first", "user_init"):
            cases.append(Case(name, cell, "native", CONFIGS[name], lengths=True))
    cases.append(Case("layers2", "lstm", "native", {"layers": 2}, backend="dynamo"))
    cases.append(Case("user_init", "gru", "native", {"init": True}, backend="dynamo"))
    # no mode asked for: the layer ONNX's LSTM op cannot express is exported the way that works
    proj = {"proj_size": 3, "layers": 2}
    cases.append(Case("proj_size", "lstm", "unrolled", proj, ask_mode=False))
    cases.append(Case("relu", "rnn", "native", {"nonlinearity": "relu"}, ask_mode=False))
    return cases + _style_cases()


# per style: configurations run for every cell, and the others with one cell each
EVERY_CELL = {"conv_cache": "pad_before", "cell_loop": "loop", "explicit_state": "layer"}
ONE_CELL = {"trim_before": "lstm", "between": "gru", "after": "rnn", "tcn": "none"}
ONE_CELL |= {"stacked": "lstm", "per_layer": "gru", "dict": "lstm", "learned": "rnn"}
STYLE_STATE = {
    "conv_cache": ".cache",
    "cell_loop": "state_in.cell",
    "explicit_state": "state_in.state",
}


def _style_cases() -> list[Case]:
    cases = []
    for style, configs in STYLE_CONFIGS.items():
        for mode in MODES:
            for config in configs:
                cells = CELLS if config == EVERY_CELL[style] else [ONE_CELL[config]]
                cases += [Case(config, cell, mode, style=style) for cell in cells]
    cases.append(Case("pad_before", "lstm", "native", style="conv_cache", backend="dynamo"))
    cases.append(Case("loop", "gru", "native", style="cell_loop", backend="dynamo"))
    cases.append(Case("layer", "lstm", "native", style="explicit_state", backend="dynamo"))
    for style, config in EVERY_CELL.items():  # native with lengths: rows of any frame count
        cases.append(Case(config, "gru", "native", style=style, lengths=True))
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matrix(case: Case, tmp_path) -> None:
    torch.manual_seed(0)
    if case.style == "recurrent":
        model = Net(case.cell, **case.kwargs)  # left in train mode: export and verify use eval
    else:
        model = build(case.style, case.cell, case.config)
    path = tmp_path / "m.onnx"
    kwargs = dict(
        example=torch.randn(2, 6, FEATURES),
        mode=case.mode if case.ask_mode else None,
        chunk=CHUNK if MODES[case.mode].fixed_chunk else None,
        backend=case.backend,
        offline=case.offline,
        lengths=case.lengths,
    )
    if case.refused:
        with pytest.raises(ExportError, match=case.refused):
            export(model, path, **kwargs)
        return
    contract = export(model, path, **kwargs)
    cell = case.cell if case.cell in CELLS else "unknown"
    assert contract.model.cell == cell and contract.model.mode == case.mode
    spec = MODES[case.mode]  # offline native graphs have no sequence_lens to wire
    default = spec.default_lengths and (spec.takes_lengths or not case.offline)
    assert (contract.lengths is not None) is (default if case.lengths is None else case.lengths)
    picked_other = not case.ask_mode and case.config == "proj_size"  # and says so
    assert ("mode_note" in contract.model.extra) is picked_other
    if case.style != "recurrent":  # the style's own state pairs, and the record of it
        assert any(STYLE_STATE[case.style] in s for s in contract.state_inputs), contract.states
        assert case.style in {s["style"] for s in contract.model.extra["streamed"]}
    assert contract.model.stateful is not case.offline
    if case.offline and kwargs["chunk"]:  # one whole sequence per call: at most a chunk
        assert contract.model.extra["max_frames_per_call"] == CHUNK
    if case.kwargs.get("init"):
        assert all(isinstance(s.init, list) for s in contract.states)  # stored in the contract
    report = verify(model, path)
    assert report.ok(atol=1e-5), report.table(per_case=True)
    assert not report.op_problems
    if not case.offline:
        cases = {d.case for d in report.diffs if ".step.onnx: " not in d.name}
        assert len(cases) == 8, cases  # chunkings {1, 3, 7, whole} x batches {1, 3}
        assert {d.kind for d in report.diffs} == {"output", "state"}
        # a fixed-chunk graph's one-step graph is verified too
        steps = {d.case for d in report.diffs if d.name.startswith("m.step.onnx: ")}
        assert bool(steps) is bool(kwargs["chunk"] and kwargs["chunk"] > 1)


def test_bidirectional_refused_for_streaming_names_the_layer(tmp_path) -> None:
    for mode in MODES:
        with pytest.raises(ExportError, match=r"layer 'rnn' is bidirectional.*offline=True"):
            export(
                Net("gru", bidirectional=True),
                tmp_path / "m.onnx",
                example=torch.randn(2, 5, 3),
                mode=mode,
            )


def test_every_style_has_a_case() -> None:
    """Registering a stream style without an exporting case in every mode, for every cell
    it combines with, fails here."""
    exported = {(c.style, c.mode, c.cell) for c in CASES if not c.refused and c.ask_mode}
    for style in STYLES.values():
        for mode in MODES:
            missing = [c for c in style.cells or ("none",) if (style.name, mode, c) not in exported]
            assert not missing, f"no matrix case exports style {style.name!r} in {mode}: {missing}"
    assert {c.style for c in CASES} == set(STYLES)


def test_every_mode_and_cell_has_a_case() -> None:
    """Registering a mode (or supporting a cell) without matrix cases fails here."""
    exported = {(c.mode, c.cell) for c in CASES if not c.refused}
    missing = {(m, cell) for m in MODES for cell in CELLS} - exported
    assert not missing, f"no matrix case exports {sorted(missing)}"
    for mode in MODES:
        for cell in CELLS:
            configs = {c.config for c in CASES if c.mode == mode and c.cell == cell}
            assert set(CONFIGS) <= configs, (mode, cell, set(CONFIGS) - configs)
    assert {(c.cell, c.mode) for c in CASES if c.backend == "dynamo"} >= {
        ("lstm", "native"),
        ("gru", "native"),
    }
