"""Tests for edgeseq.train.training and .checkpoint: tiny models, few steps, CPU only."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from edgeseq.errors import EdgeseqError, InputError, ModelLoadError
from edgeseq.train._batches import encode_packed
from edgeseq.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from edgeseq.train.data import Vocabulary
from edgeseq.train.models import CELLS, TOPOLOGIES, Seq2Seq, SeqConfig, SeqModel
from edgeseq.train.training import (
    SequenceData,
    TrainConfig,
    evaluate,
    fit,
    fit_seq2seq,
    fit_stream,
)

QUIET = dict(progress=False, val_fraction=0.0)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- one tiny learnable task per topology ---------------------------------------------------
# Each returns (model, data); data is a SequenceData, or (sources, targets) for seq2seq.


def _many_to_many(cell: str):
    x = torch.randn(64, 12, 1, generator=_gen())
    y = torch.cat([torch.zeros(64, 1, 1), x[:, :-1]], dim=1)  # echo the previous frame: memory
    return SeqModel(SeqConfig(cell=cell, hidden_size=16, task="forecast")), SequenceData(x, y)


def _many_to_one(cell: str):
    g = _gen()
    x = torch.randn(64, 10, 1, generator=g)
    lengths = torch.randint(3, 11, (64,), generator=g)
    last = x[torch.arange(64), lengths - 1, 0]
    pad = torch.arange(10)[None] >= lengths[:, None]
    x[pad] = 5 * torch.randn(int(pad.sum()), 1, generator=g)  # loud garbage after each end
    cfg = SeqConfig(
        cell=cell, hidden_size=16, output_size=2, topology="many_to_one", task="classify"
    )
    return SeqModel(cfg), SequenceData(x, (last > 0).long(), lengths=lengths)


def _one_to_one(cell: str):
    x = torch.randn(64, 8, 1, generator=_gen())
    cfg = SeqConfig(cell=cell, hidden_size=16, topology="one_to_one")
    return SeqModel(cfg), SequenceData(x, 0.5 - 2 * x)


def _one_to_many(cell: str):
    kind = torch.arange(64) % 3
    pattern = torch.tensor([[4, 5, 4, 5, 3], [6, 6, 7, 7, 3], [5, 4, 7, 6, 3]])  # ends with EOS
    targets = pattern[kind]  # (64, 5)
    inputs = torch.cat([torch.full((64, 1), Vocabulary.BOS), targets[:, :-1]], dim=1)
    cfg = SeqConfig(
        cell=cell, input_size=8, hidden_size=16, output_size=8, vocab_size=8,
        topology="one_to_many", condition_size=3, task="caption",
    )  # fmt: skip
    conditions = torch.nn.functional.one_hot(kind, 3).float()
    return SeqModel(cfg), SequenceData(inputs, targets, conditions=conditions)


def _seq2seq(cell: str):
    g = _gen()
    sources = [
        torch.randint(4, 8, (int(n),), generator=g) for n in torch.randint(1, 5, (64,), generator=g)
    ]
    targets = [
        torch.cat([torch.tensor([Vocabulary.BOS]), s, torch.tensor([Vocabulary.EOS])])
        for s in sources
    ]
    common = dict(cell=cell, input_size=8, hidden_size=16, vocab_size=8)
    encoder = SeqConfig(**common, topology="many_to_one", task="translate")
    decoder = SeqConfig(**common, output_size=8, task="translate")
    return Seq2Seq(encoder, decoder), (sources, targets)


TASKS: dict[str, Callable] = {
    "many_to_many": _many_to_many,
    "many_to_one": _many_to_one,
    "one_to_one": _one_to_one,
    "one_to_many": _one_to_many,
    "seq2seq": _seq2seq,
}


def test_every_topology_has_a_training_task():
    assert set(TASKS) == set(TOPOLOGIES), "add a task to TASKS for each topology in models.py"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_cell_and_topology_learns(cell: str, topology: str):
    torch.manual_seed(0)
    model, data = TASKS[topology](cell)
    before = evaluate(model, data)
    config = TrainConfig(epochs=12, batch_size=16, lr=0.02, **QUIET)
    if topology == "seq2seq":
        result = fit_seq2seq(model, *data, config)
    else:
        result = fit(model, data, config)
    after = evaluate(model, data)
    assert after < 0.6 * before, f"{cell}/{topology}: loss {before:.3f} -> {after:.3f}"
    assert result.steps == 12 * 4 and len(result.grad_norms) == result.steps
    assert [e.epoch for e in result.history] == list(range(12)) and result.best_epoch is None


# --- masking and packing ----------------------------------------------------------------------


def test_many_to_one_scores_the_last_valid_frame_only():
    torch.manual_seed(0)
    model, data = _many_to_one("gru")
    loss = evaluate(model, data)
    y, _ = model(data.inputs)  # (N, T, 2)
    last = y[torch.arange(len(data)), data.lengths - 1]  # (N, 2)
    assert loss == pytest.approx(
        torch.nn.functional.cross_entropy(last, data.targets).item(), rel=1e-5
    )
    noisy = data.inputs.clone()
    pad = torch.arange(10)[None] >= data.lengths[:, None]
    noisy[pad] = 100.0
    assert evaluate(model, SequenceData(noisy, data.targets, data.lengths)) == pytest.approx(
        loss, rel=1e-6
    )


def test_many_to_many_masks_padded_frames():
    torch.manual_seed(0)
    model, data = _many_to_many("lstm")
    lengths = torch.randint(4, 13, (64,), generator=_gen(1))
    pad = torch.arange(12)[None] >= lengths[:, None]
    garbage_x, garbage_y = data.inputs.clone(), data.targets.clone()
    garbage_x[pad], garbage_y[pad] = 50.0, -50.0
    clean = evaluate(model, SequenceData(data.inputs, data.targets, lengths))
    assert evaluate(model, SequenceData(garbage_x, garbage_y, lengths)) == pytest.approx(
        clean, rel=1e-6
    )


@pytest.mark.parametrize("cell", CELLS)
def test_seq2seq_encodes_padded_sources_as_if_alone(cell: str):
    torch.manual_seed(0)
    model, (sources, _) = _seq2seq(cell)
    lengths = torch.tensor([len(s) for s in sources[:8]])
    padded = torch.nn.utils.rnn.pad_sequence(sources[:8], batch_first=True)  # PAD = 0
    with torch.no_grad():
        packed = encode_packed(model.encoder, padded, lengths)
        for i, src in enumerate(sources[:8]):
            alone = model.encode(src[None])
            for got, want in zip(packed, alone, strict=True):
                torch.testing.assert_close(got[:, i], want[:, 0])


# --- determinism, clipping, early stopping ----------------------------------------------------


def test_same_seed_gives_identical_weights_and_leaves_global_rng_alone():
    torch.manual_seed(1)
    cfg = SeqConfig(cell="lstm", hidden_size=8, layers=2, dropout=0.3, task="forecast")
    models = [SeqModel(cfg)]
    models += [copy.deepcopy(models[0]) for _ in range(2)]
    _, data = _many_to_many("lstm")
    rng = torch.get_rng_state()
    results = [
        fit(m, data, TrainConfig(epochs=2, batch_size=8, seed=s, val_fraction=0.25, progress=False))
        for m, s in zip(models, (7, 7, 8), strict=True)
    ]
    assert torch.equal(rng, torch.get_rng_state())
    a, b, c = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert results[0].history == results[1].history
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_clipping_bounds_the_applied_gradient_norm():
    applied: list[float] = []

    def measure(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        applied.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    torch.manual_seed(0)
    model, data = _many_to_many("rnn")
    handle = register_optimizer_step_pre_hook(measure)
    try:
        clipped = fit(copy.deepcopy(model), data, TrainConfig(epochs=1, clip_norm=0.01, **QUIET))
        n = len(applied)
        free = fit(model, data, TrainConfig(epochs=1, clip_norm=None, **QUIET))
    finally:
        handle.remove()
    assert min(clipped.grad_norms) > 0.01  # recorded before clipping, so above the limit
    assert max(applied[:n]) <= 0.01 * (1 + 1e-4)
    np.testing.assert_allclose(applied[n:], free.grad_norms, rtol=1e-5)


def test_early_stopping_triggers_and_restores_the_best_weights():
    torch.manual_seed(0)
    x = torch.randn(32, 5, 1, generator=_gen())
    model = SeqModel(SeqConfig(cell="gru", hidden_size=8))
    train, val = SequenceData(x, torch.ones(32, 5)), SequenceData(x, -torch.ones(32, 5))
    config = TrainConfig(epochs=20, batch_size=8, lr=0.05, patience=2, progress=False)
    result = fit(model, train, config, val=val)
    assert result.stopped_early and result.best_epoch == 0 and len(result.history) == 3
    assert result.history[2].val_loss > result.history[0].val_loss
    assert evaluate(model, val) == pytest.approx(result.history[0].val_loss, rel=1e-5)


def test_lr_decay_shrinks_the_step_after_each_epoch_without_a_better_val_loss():
    torch.manual_seed(0)
    x = torch.randn(32, 5, 1, generator=_gen())
    model = SeqModel(SeqConfig(cell="gru", hidden_size=8))
    train, val = SequenceData(x, torch.ones(32, 5)), SequenceData(x, -torch.ones(32, 5))
    config = TrainConfig(epochs=4, batch_size=8, lr=0.05, lr_decay=0.5, progress=False)
    result = fit(model, train, config, val=val)  # val only worsens: every epoch decays
    assert [e.lr for e in result.history] == pytest.approx([0.05, 0.05, 0.025, 0.0125])
    assert result.best_epoch == 0 and not result.stopped_early
    with pytest.raises(InputError, match="lr_decay must be in"):
        TrainConfig(lr_decay=1.5)
    with pytest.raises(InputError, match="lr_decay needs validation"):
        fit(model, train, TrainConfig(lr_decay=0.5, **QUIET))


def test_patience_without_validation_is_refused():
    model, data = _many_to_many("gru")
    with pytest.raises(InputError, match="patience needs validation"):
        fit(model, data, TrainConfig(patience=2, **QUIET))


def test_max_steps_and_progress_line(capsys):
    model, data = _many_to_many("gru")
    result = fit(model, data, TrainConfig(epochs=5, batch_size=8, max_steps=3, val_fraction=0.25))
    assert result.steps == 3 and len(result.history) == 1 and not result.stopped_early
    err = capsys.readouterr().err
    assert "epoch 1/5" in err and " loss " in err and " val " in err
    fit(model, data, TrainConfig(epochs=1, max_steps=1, **QUIET))
    assert capsys.readouterr().err == ""


# --- truncated BPTT ---------------------------------------------------------------------------


class _Recording(SeqModel):
    """Keeps every (state in, state out) pair that forward sees."""

    def __init__(self, config: SeqConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple] = []
        self.widths: list[int] = []  # frames per call

    def forward(self, x, state=None):
        y, new = super().forward(x, state)
        self.calls.append((state, new))
        self.widths.append(x.shape[1])
        return y, new


@pytest.mark.parametrize("entry", ["fit_stream", "fit"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_tbptt_carries_the_final_state_detached(entry: str, cell: str):
    torch.manual_seed(0)
    model = _Recording(SeqConfig(cell=cell, hidden_size=8, task="forecast"))
    x = torch.randn(2, 20, 1, generator=_gen())
    config = TrainConfig(epochs=1, batch_size=2, tbptt=5, **QUIET)
    if entry == "fit_stream":
        result = fit_stream(model, x, x.roll(1, dims=1), config)
    else:
        result = fit(model, SequenceData(x, x.roll(1, dims=1)), config)
    assert result.steps == 4 and len(model.calls) == 4 and model.calls[0][0] is None
    for (carried, _), (_, previous) in zip(model.calls[1:], model.calls[:-1], strict=True):
        assert len(carried) == len(previous) == (2 if cell == "lstm" else 1)
        for c, p in zip(carried, previous, strict=True):
            assert p.grad_fn is not None  # the previous window's state had a graph ...
            assert c.grad_fn is None and not c.requires_grad  # ... that does not cross over
            assert torch.equal(c, p.detach())  # and the next window starts from its value


def test_fit_stream_single_stream_whole_bptt_and_tail_validation():
    torch.manual_seed(0)
    model = _Recording(SeqConfig(cell="rnn", hidden_size=8, task="forecast"))
    series = torch.sin(torch.arange(60) / 4.0)[:, None]  # one stream, (L, F)
    config = TrainConfig(epochs=2, val_fraction=0.25, progress=False)
    result = fit_stream(model, series[:-1], series[1:], config)
    assert result.steps == 2  # one window per epoch without tbptt
    # train on the first 44 of 59 frames; validation runs all 59 so the tail starts warm
    assert model.widths == [44, 59, 44, 59]
    assert all(e.val_loss is not None for e in result.history)


def test_fit_stream_refuses_other_topologies():
    model, data = _many_to_one("gru")
    with pytest.raises(InputError, match="many_to_many"):
        fit_stream(model, data.inputs, data.targets, TrainConfig(**QUIET))


def test_shape_errors_say_what_was_expected():
    model, data = _many_to_many("gru")
    with pytest.raises(InputError, match=r"expected \(N, T, 1\)"):
        fit(model, SequenceData(data.inputs.repeat(1, 1, 2), data.targets), TrainConfig(**QUIET))
    with pytest.raises(InputError, match="targets: expected"):
        fit(model, SequenceData(data.inputs, data.targets[:, :3]), TrainConfig(**QUIET))


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_round_trip_seq_model(tmp_path):
    torch.manual_seed(0)
    model, data = _one_to_many("lstm")
    vocab = Vocabulary("abc")
    extra = {"mean": np.array([1.5, 2.0], dtype=np.float32), "std": np.float64(3.0),
             "vocabulary": vocab.to_list(), "labels": ["x", "y"], "dataset": "toy"}  # fmt: skip
    path = save_checkpoint(tmp_path / "m.pt", model, extra=extra)
    raw = torch.load(path, weights_only=True, map_location="cpu")  # no code, by construction
    assert raw["format"] == CHECKPOINT_FORMAT and raw["kind"] == "SeqModel"
    loaded, got = load_checkpoint(path)
    assert isinstance(loaded, SeqModel) and loaded.config == model.config and not loaded.training
    assert got == {"mean": [1.5, 2.0], "std": 3.0, "vocabulary": vocab.to_list(),
                   "labels": ["x", "y"], "dataset": "toy"}  # fmt: skip
    with torch.no_grad():
        state = model.init_state(condition=data.conditions[:4])
        torch.testing.assert_close(
            loaded(data.inputs[:4], state)[0], model(data.inputs[:4], state)[0]
        )


def test_checkpoint_round_trip_seq2seq(tmp_path):
    torch.manual_seed(0)
    model, (sources, targets) = _seq2seq("gru")
    loaded, extra = load_checkpoint(save_checkpoint(tmp_path / "s.pt", model))
    assert isinstance(loaded, Seq2Seq) and extra == {}
    assert loaded.encoder.config == model.encoder.config
    assert loaded.decoder.config == model.decoder.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(sources[0][None], targets[0][None, :-1]),
                                   model(sources[0][None], targets[0][None, :-1]))  # fmt: skip


SIDE_EFFECTS: list[str] = []


def _mark(note: str) -> str:
    SIDE_EFFECTS.append(note)
    return note


class _Payload:
    def __reduce__(self):
        return (_mark, ("unpickled!",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    model = SeqModel(SeqConfig(hidden_size=4))
    path = save_checkpoint(tmp_path / "ok.pt", model)
    payload = torch.load(path, weights_only=True)
    payload["extra"] = _Payload()  # what a tampered or foreign file could carry
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError, match="pickled code") as info:
        load_checkpoint(tmp_path / "evil.pt")
    assert "_mark" in str(info.value) and SIDE_EFFECTS == []


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no checkpoint at") as info:
        load_checkpoint(tmp_path / "missing.pt")
    assert isinstance(info.value, EdgeseqError) and isinstance(info.value, OSError)
    (tmp_path / "noise.pt").write_bytes(random.Random(0).randbytes(256))  # see test_checkpoint
    with pytest.raises(ModelLoadError, match="not an edgeseq checkpoint"):
        load_checkpoint(tmp_path / "noise.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(ModelLoadError, match="not an edgeseq checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    payload = torch.load(
        save_checkpoint(tmp_path / "v.pt", SeqModel(SeqConfig())), weights_only=True
    )
    torch.save({**payload, "format_version": 99}, tmp_path / "v99.pt")
    with pytest.raises(
        ModelLoadError, match=r"expected checkpoint format version 1, got 99.*upgrade"
    ):
        load_checkpoint(tmp_path / "v99.pt")
    with pytest.raises(InputError, match="JSON-able"):
        save_checkpoint(tmp_path / "x.pt", SeqModel(SeqConfig()), extra={"f": object()})
