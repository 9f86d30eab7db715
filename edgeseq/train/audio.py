"""Audio front-end in the graph: raw 16 kHz samples in, log-mel features, a recurrent model.

:class:`LogMel` turns frames of raw samples into log-mel filterbank features with matrix
products only (window, DFT, power, mel, log), so it exports into the ONNX graph and a
device streams raw samples: one model step per ``window`` new samples, each frame
carrying ``context`` samples from before it (the runtime's fixed windows, recorded in
the contract as ``model.extra["window"]``; see :mod:`edgeseq.runtime._window`).

A step of ``window = stack * hop`` new samples holds ``stack`` short-time frames of
``n_fft`` samples, ``hop`` apart; the frame input is ``window + context`` samples with
``context = n_fft - hop``. Every feature depends only on samples up to the end of its
step: the front-end is causal, and what a step sees is exactly what has arrived.

:class:`Transcriber` puts a :class:`~edgeseq.train.models.SeqModel` (many-to-many) on top
and returns log-probabilities per step for CTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgeseq.train.models import SeqConfig, SeqModel

__all__ = ["FrontEnd", "LogMel", "Transcriber", "cut_frames", "mel_filterbank"]


@dataclass(frozen=True)
class FrontEnd:
    """Sizes of a :class:`LogMel` front-end (defaults: 25 ms frames every 10 ms at 16 kHz,
    three per 30 ms step, 40 mel bands)."""

    rate: int = 16_000
    n_fft: int = 400  # samples per short-time frame
    hop: int = 160  # samples between short-time frames
    stack: int = 3  # short-time frames per model step
    mels: int = 40
    fmin: float = 20.0
    fmax: float | None = None  # default: rate / 2

    @property
    def window(self) -> int:
        """New samples per model step."""
        return self.hop * self.stack

    @property
    def context(self) -> int:
        """Samples before a step's new ones that its first short-time frame also reads."""
        return self.n_fft - self.hop

    @property
    def frame_size(self) -> int:
        return self.window + self.context

    @property
    def features(self) -> int:
        return self.stack * self.mels


def mel_filterbank(rate: int, n_fft: int, mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters on the HTK mel scale: ``(n_fft // 2 + 1, mels)`` float32."""

    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(np.array(fmin)), to_mel(np.array(fmax)), mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (mels, 1)
    rise = (bins[None] - lo) / (mid - lo)
    fall = (hi - bins[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(rise, fall)).T.astype(np.float32)  # (bins, mels)


class LogMel(nn.Module):
    """``(batch, T, frame_size)`` raw samples -> ``(batch, T, stack * mels)`` normalised
    log-mel features. ``mean``/``std`` (buffers, set by :meth:`set_stats`) standardise them."""

    def __init__(self, spec: FrontEnd | None = None) -> None:
        super().__init__()
        self.spec = s = spec or FrontEnd()
        n = np.arange(s.n_fft)
        hann = 0.5 - 0.5 * np.cos(2 * math.pi * n / s.n_fft)  # periodic Hann
        k = np.arange(s.n_fft // 2 + 1)
        angle = 2 * math.pi * np.outer(n, k) / s.n_fft  # (n_fft, bins)
        self.register_buffer(
            "cos", torch.from_numpy((hann[:, None] * np.cos(angle)).astype(np.float32))
        )
        self.register_buffer(
            "sin", torch.from_numpy((hann[:, None] * np.sin(angle)).astype(np.float32))
        )
        fb = mel_filterbank(s.rate, s.n_fft, s.mels, s.fmin, s.fmax or s.rate / 2)
        self.register_buffer("mel", torch.from_numpy(fb))
        self.register_buffer("mean", torch.zeros(s.features))
        self.register_buffer("std", torch.ones(s.features))

    def set_stats(self, features: torch.Tensor) -> None:
        """Standardise with the mean and std of unnormalised ``features`` ``(N, features)``."""
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-3))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-mel ``(batch, T, stack * mels)`` of frames ``x``."""
        s = self.spec
        parts = [x[..., i * s.hop : i * s.hop + s.n_fft] for i in range(s.stack)]
        frames = torch.stack(parts, dim=-2)  # (batch, T, stack, n_fft)
        power = (frames @ self.cos) ** 2 + (frames @ self.sin) ** 2  # (batch, T, stack, bins)
        logmel = torch.log(power @ self.mel + 1e-6)  # (batch, T, stack, mels)
        return logmel.flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.raw(x) - self.mean) / self.std


def cut_frames(samples: np.ndarray, spec: FrontEnd) -> np.ndarray:
    """``(n,)`` samples -> ``(n // window, frame_size)`` frames, cut as the runtime cuts a
    stream: zeros before the first sample, a partial last window left out."""
    padded = np.concatenate([np.zeros(spec.context, np.float32), samples.astype(np.float32)])
    k = len(samples) // spec.window
    idx = np.arange(k)[:, None] * spec.window + np.arange(spec.frame_size)[None]
    return padded[idx]


class Transcriber(nn.Module):
    """Raw-sample frames -> :class:`LogMel` -> a many-to-many recurrent model -> per-step
    log-probabilities ``(batch, T, vocab)`` over characters (CTC blank included).

    ``rnn`` is a :class:`SeqModel` whose ``input_size`` is the front-end's feature count;
    training can run it on precomputed features (``model.front(frames)``).
    """

    def __init__(self, config: SeqConfig, spec: FrontEnd | None = None) -> None:
        super().__init__()
        self.front = LogMel(spec)
        if config.input_size != self.front.spec.features:
            raise ValueError(
                f"config.input_size must be the front-end's {self.front.spec.features} "
                f"features (stack * mels), got {config.input_size}"
            )
        self.rnn = SeqModel(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.front(x))
        return torch.log_softmax(y, dim=-1)
