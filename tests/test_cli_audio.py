"""The CLI on audio: inspect stores a third-party model's window, stream reads WAV and PCM.

Uses the Silero-VAD-like zoo model and a WAV written here (espeak-ng is only needed by the
catalogue test); outputs are compared with the library on the same samples.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from _models import VAD_CONTEXT, zoo
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.cli._audio import resample
from edgeseq.runtime import StreamingPredictor

SR = {"sr": np.array(16000, np.int64)}
RNG = np.random.default_rng(5)


def _wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_audio") / "vad.edgeseq.onnx"
    args = ["inspect", str(zoo.get("vad")), "--state", "state:stateN:2,batch,16"]
    args += ["--constant", "sr=16000", "--context", str(VAD_CONTEXT), "--window", "8"]
    res = CliRunner().invoke(main, [*args, "--rate", "16000", "--write-contract", str(out)])
    assert res.exit_code == 0, res.output
    assert "window        8" in res.output and "sample rate   16000" in res.output
    return out


def _library(samples: np.ndarray) -> np.ndarray:
    p = StreamingPredictor(zoo.get("vad"), state={"state": "stateN"}, constants=SR,
                           context=VAD_CONTEXT, window=8)  # fmt: skip
    return p.step(samples.astype(np.float32))[:, 0]


def test_stream_wav_is_resampled_to_the_stored_rate(stored: Path, tmp_path: Path) -> None:
    pcm = (RNG.standard_normal(2205) * 3000).astype(np.int16)  # 0.1 s at 22.05 kHz
    wav = tmp_path / "a.wav"
    _wav(wav, pcm, 22050)
    args = ["stream", str(stored), "-i", str(wav), "--constant", "sr=16000", "--format", "json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    ref = _library(resample(pcm / 32768.0, 22050, 16000))
    assert len(lines) == len(ref) == 1600 // 8
    np.testing.assert_allclose([x["output"][0] for x in lines], ref, rtol=0, atol=1e-6)
    assert lines[-1]["end_s"] == 0.1


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
def test_stream_raw_pcm_on_stdin(stored: Path, fmt: str) -> None:
    x = (RNG.standard_normal(203) * 0.2).astype(np.float32)
    if fmt == "s16le":
        x = np.round(x * 32768).astype(np.int16)
        data, floats = x.astype("<i2").tobytes(), x / 32768.0
    else:
        data, floats = x.astype("<f4").tobytes(), x
    args = ["stream", str(stored), "--constant", "sr=16000", "--pcm", fmt, "--rate", "16000"]
    res = CliRunner().invoke(main, args, input=data)
    assert res.exit_code == 0, res.output
    got = [float(v) for v in res.stdout.split()]
    np.testing.assert_allclose(got, _library(floats), rtol=0, atol=1e-6)


def test_bad_cli_options_are_one_line_errors(stored: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", str(zoo.get("vad")), "--state", "nope:stateN"])
    assert res.exit_code != 0 and "--state 'nope': expected a graph input name" in res.output
    res = runner.invoke(main, ["inspect", str(zoo.get("vad")), "--state", "state:stateN:2,x"])
    assert res.exit_code != 0 and "SHAPE" in res.output
    res = runner.invoke(main, ["stream", str(stored), "--pcm", "s16le"])
    assert res.exit_code != 0 and "--rate" in res.output
    res = runner.invoke(main, ["stream", str(stored), "--constant", "sr=16000.5", "--pcm",
                               "s16le", "--rate", "16000"], input=b"")  # fmt: skip
    assert res.exit_code != 0 and "expected int64" in res.output and "np.array" not in res.output
    assert "Traceback" not in res.output
