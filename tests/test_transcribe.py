"""Streaming transcription parts: the log-mel front-end in the graph, raw samples streamed
in any chunking (solo and pooled), greedy CTC as emissions arrive, CTC training, and
espeak-ng synthesis with word timings and noise."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseq.contract import Preprocessing
from edgeseq.errors import InputError
from edgeseq.exporters import export_model, verify
from edgeseq.runtime import StreamingPredictor, StreamPool
from edgeseq.runtime.ctc import GreedyCTC
from edgeseq.train.audio import FrontEnd, LogMel, Transcriber, cut_frames, mel_filterbank
from edgeseq.train.ctc import fit_ctc
from edgeseq.train.models import SeqConfig
from edgeseq.train.training import TrainConfig

RATE = 16_000


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


VOCAB = ["_", " ", "a", "b", "c"]


def _samples(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    return (tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_logmel_matches_an_fft_reference() -> None:
    spec = FrontEnd()
    x = _samples(0.5)
    frames = cut_frames(x, spec)  # (T, 720)
    assert frames.shape == (len(x) // spec.window, spec.frame_size)
    with torch.no_grad():
        got = LogMel(spec).raw(torch.from_numpy(frames)[None])[0].numpy()  # (T, 120)
    padded = np.concatenate([np.zeros(spec.context), x])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(spec.n_fft) / spec.n_fft)
    fb = mel_filterbank(spec.rate, spec.n_fft, spec.mels, spec.fmin, spec.rate / 2)
    for t in range(len(frames)):
        for i in range(spec.stack):
            start = t * spec.window + i * spec.hop  # the i-th 25 ms frame of step t
            power = np.abs(np.fft.rfft(padded[start : start + spec.n_fft] * hann)) ** 2
            want = np.log(power @ fb + 1e-6)
            np.testing.assert_allclose(got[t, i * spec.mels : (i + 1) * spec.mels], want, atol=2e-3)


def _transcriber(seed: int = 0) -> Transcriber:
    torch.manual_seed(seed)
    spec = FrontEnd()
    cfg = SeqConfig(cell="lstm", input_size=spec.features, hidden_size=8, output_size=len(VOCAB))
    model = Transcriber(cfg, spec).eval()
    with torch.no_grad():
        model.front.set_stats(
            model.front.raw(torch.from_numpy(cut_frames(_samples(1), spec))[None])[0]
        )
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Transcriber, Path]:
    model = _transcriber()
    path = tmp_path_factory.mktemp("asr") / "asr.onnx"
    export_model(model, path, preprocessing=Preprocessing(vocab=VOCAB))
    return model, path


def test_raw_samples_stream_in_any_chunking(exported) -> None:
    model, path = exported
    contract = StreamingPredictor(path).contract
    extra = contract.model.extra
    assert (extra["window"], extra["rate"], extra["blank"]) == (480, RATE, 0)
    assert contract.frames.shape == ["batch", "time", 720] and contract.model.task == "transcribe"
    x = _samples(1.3, seed=1)
    with torch.no_grad():
        ref = model(torch.from_numpy(cut_frames(x, model.front.spec))[None])[0].numpy()
    for chunk in (320, 97, 480, 777, len(x)):  # 20 ms, odd sizes, exact windows, whole
        p = StreamingPredictor(path)
        parts = [p.step(x[i : i + chunk]) for i in range(0, len(x), chunk)]
        got = np.concatenate([q for q in parts if len(q)])
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4, chunk
        assert p.pending == len(x) % 480
    assert verify(model, path).ok(1e-4)


def test_pool_of_microphones_equals_solo_streams(exported) -> None:
    model, path = exported
    mics = [_samples(s, seed=k) for k, s in enumerate((0.9, 1.2, 0.5))]
    solo = []
    for x in mics:
        with torch.no_grad():
            solo.append(model(torch.from_numpy(cut_frames(x, model.front.spec))[None])[0].numpy())
    got: list[list[np.ndarray]] = [[] for _ in mics]
    with StreamPool(path, max_streams=4) as pool:
        ids = [pool.open() for _ in mics]
        pos = [0] * len(mics)
        while any(p < len(x) for p, x in zip(pos, mics)):
            step = {}
            for k, (sid, x) in enumerate(zip(ids, mics)):
                if pos[k] < len(x):
                    n = 320 if k != 1 else 160 * (1 + pos[k] % 3)  # uneven paces
                    step[sid] = x[pos[k] : pos[k] + n]
                    pos[k] += n
            for sid, out in pool.step(step).items():
                if len(out):
                    got[ids.index(sid)].append(out)
    for k, ref in enumerate(solo):
        assert np.abs(np.concatenate(got[k]) - ref).max() <= 1e-4


def test_greedy_ctc_collapses_as_emissions_arrive() -> None:
    ids = [0, 2, 2, 0, 2, 3, 3, 1, 1, 0, 4, 0]  # blank a a blank a b b space space blank c
    scores = np.eye(len(VOCAB))[ids]
    whole = GreedyCTC(VOCAB)
    assert whole.push(scores) == "aab c"
    assert whole.steps == [1, 4, 5, 7, 10]
    parts = GreedyCTC(VOCAB)
    pieces = [parts.push(scores[i : i + 5]) for i in range(0, len(ids), 5)]
    assert "".join(pieces) == "aab c" and parts.steps == whole.steps
    assert parts.push(np.zeros((0, len(VOCAB)))) == ""
    with pytest.raises(InputError, match=r"\[k, 5\]"):
        parts.push(np.zeros((2, 3)))


def test_fit_ctc_learns_and_checks_its_inputs() -> None:
    rng = np.random.default_rng(0)
    inputs, targets = [], []
    for _ in range(48):  # each symbol shown for 3 frames, silence (blank) between
        labels = rng.integers(1, 4, 3)
        frames = [np.eye(4)[0]] * 2
        for s in labels:
            frames += [np.eye(4)[s]] * 3 + [np.eye(4)[0]]
        noise = 0.1 * rng.standard_normal((len(frames), 4))
        inputs.append((np.array(frames) + noise).astype(np.float32))
        targets.append(labels)
    torch.manual_seed(0)
    from edgeseq.train.models import SeqModel

    model = SeqModel(SeqConfig(cell="gru", input_size=4, hidden_size=16, output_size=4))
    cfg = TrainConfig(epochs=15, batch_size=8, lr=1e-2, val_fraction=0.25, progress=False)
    result = fit_ctc(model, inputs, targets, cfg)
    assert result.history[-1].val_loss < 0.3 * result.history[0].val_loss
    with torch.no_grad():
        y, _ = model(torch.from_numpy(inputs[0])[None])
    assert GreedyCTC(["_", "1", "2", "3"]).push(y[0].numpy()) == "".join(map(str, targets[0]))
    with pytest.raises(InputError, match="never the blank"):
        fit_ctc(model, inputs[:2], [np.array([0, 1]), np.array([1])], cfg)
    with pytest.raises(InputError, match="at least one frame per symbol"):
        fit_ctc(model, [np.zeros((2, 4))], [np.array([1, 2, 3])], cfg)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthesis_has_word_timings_and_noise_has_its_snr() -> None:
    from edgeseq.train.speech import add_noise, espeak_voices, synthesize

    assert "en-us" in espeak_voices("en") and "m3" in espeak_voices("variant")
    u = synthesize("one two three four", "en-us+m3", rate=150)
    assert u.samples.dtype == np.float32 and 0.8 < u.seconds < 3.0
    assert [w for w, _, _ in u.words] == ["one", "two", "three", "four"]
    starts = [a for _, a, _ in u.words]
    assert None not in starts and starts == sorted(starts) and u.words[-1][2] <= u.seconds
    merged = synthesize("play some jazz in the garden", "en-us")  # "the" joins "garden"
    assert [w for w, _, _ in merged.words] == ["play", "some", "jazz", "in", "the", "garden"]
    assert any(a is None for _, a, _ in merged.words)
    for (_, start, end), (_, nxt, _) in zip(merged.words, merged.words[1:]):
        assert (end is None) == (start is None or nxt is None)  # ends where the next starts
    assert merged.words[-1][2] is not None
    rng = np.random.default_rng(0)
    speech = u.samples[np.abs(u.samples) > 0.01 * np.abs(u.samples).max()]
    for kind in ("white", "pink", "brown"):
        noise = add_noise(u.samples, 10.0, rng, kind) - u.samples
        snr = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
        assert abs(snr - 10.0) < 0.1, (kind, snr)
    with pytest.raises(InputError, match="no voice"):
        synthesize("hello", "xx-nowhere")
