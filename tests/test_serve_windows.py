"""edgeseq serve with a windowed model: raw audio samples on the wire, one reply row per
completed window (a transcriber fed 20 ms packets, as a microphone sends them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _serve import ServerProcess

from edgeseq.client import StreamClient
from edgeseq.contract import Preprocessing
from edgeseq.exporters import export_model
from edgeseq.runtime import StreamingPredictor
from edgeseq.train.audio import FrontEnd, Transcriber
from edgeseq.train.models import SeqConfig

pytestmark = pytest.mark.timeout(300)
VOCAB = ["<blank>", " ", "a", "b"]


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory):
    torch.manual_seed(0)
    spec = FrontEnd()
    cfg = SeqConfig(cell="gru", input_size=spec.features, hidden_size=8, output_size=len(VOCAB))
    path = tmp_path_factory.mktemp("serve_asr") / "asr.onnx"
    export_model(Transcriber(cfg, spec).eval(), path, preprocessing=Preprocessing(vocab=VOCAB))
    return path


def _audio(seed: int, seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16_000 * seconds))).astype(
        np.float32
    )


def test_microphone_packets_equal_local_streaming(transcriber) -> None:
    with ServerProcess(transcriber) as server:
        for seed, packet in ((0, 320), (1, 1000)):  # 20 ms packets; packets over a window
            audio = _audio(seed, 0.8)
            local = StreamingPredictor(transcriber)
            with StreamClient(server.url) as client:
                assert client.ready.frame_shape == [] and client.ready.window_samples == 480
                for at in range(0, len(audio), packet):
                    got = client.step(audio[at : at + packet])
                    ref = local.step(audio[at : at + packet])
                    assert got.shape == ref.shape  # (0 or more windows, vocab)
                    np.testing.assert_allclose(got, ref, atol=1e-6)
                snap = client.snapshot()  # the unfinished window's samples travel with it
            assert local.pending == len(audio) % 480
            with StreamClient(server.url) as again:
                again.restore(snap)
                more = _audio(9, 0.05)  # under max_frames (1024 samples by default)
                np.testing.assert_allclose(again.step(more), local.step(more), atol=1e-6)
