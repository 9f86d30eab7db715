"""Synthetic speech for transcription examples: espeak-ng, with word timings and noise.

espeak-ng (Debian package ``espeak-ng``, GPL-3.0+) is a formant synthesiser: it speaks
English in several accents (``en-us``, ``en-gb-scotland``, ...) and ~100 voice variants
(``+m1``…``+m7``, ``+f1``…``+f5``, ``+Alex``, ...), at any speed and pitch. Its library
reports where each word starts in the audio, so the word boundaries of every utterance
are known exactly, which a streaming transcriber's latency is measured against.

It is *synthetic* speech: rule-based pronunciation, no disfluencies, no room acoustics,
no real microphones. A model trained on it shows the streaming machinery and how
recognition degrades with noise and unseen voices; it says nothing about human speech.

The library is called through :mod:`ctypes` (``libespeak-ng.so.1``); resampling to
16 kHz uses scipy (a dependency of the ``examples`` extra).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import InputError

__all__ = ["NOISES", "Utterance", "add_noise", "espeak_voices", "synthesize"]

RATE = 16_000
NOISES = ("white", "pink", "brown")
_WORD, _END, _TERMINATED = 1, 5, 0  # espeak_EVENT_TYPE values
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER values
_SYNCHRONOUS, _DONT_EXIT = 2, 0x8000
_INSTALL = "espeak-ng is not installed; on Debian or Ubuntu run: apt-get install espeak-ng"
_UTF8, _POS_CHARACTER = 1, 1


@dataclass
class Utterance:
    """One synthesised utterance at 16 kHz.

    ``words`` holds ``(word, start, end)`` for every word of the text, in seconds: a word
    starts where espeak-ng's word event says and ends where the next word's starts (the
    last one where speech ends). espeak-ng speaks some short words together with the next
    one ("the cellar") and reports one event for both: such a word has ``start`` and
    ``end`` None, and the word before it ``end`` None (where it ends is not reported).
    """

    text: str
    voice: str
    samples: np.ndarray  # float32 in [-1, 1], (n,)
    words: list[tuple[str, float | None, float | None]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_int64),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Espeak:
    """The loaded library, initialised once for synchronous synthesis with a callback."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError:
            raise ImportError(
                "espeak-ng's library (libespeak-ng.so.1) is not installed; on Debian or "
                "Ubuntu run: apt-get install espeak-ng"
            ) from None
        self.rate = int(self.lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _DONT_EXIT))
        if self.rate <= 0:
            raise ImportError(f"espeak_Initialize failed ({self.rate}); reinstall espeak-ng")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, int]] = []  # (type, text position, sample)
        self._cb = _Callback(self._collect)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._cb)

    def _collect(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _TERMINATED:
            e = events[i]
            self.events.append((e.type, e.text_position, e.sample))
            i += 1
        return 0

    def speak(self, text: str, voice: str, rate: int, pitch: int, range_: int):
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise InputError(
                f"espeak-ng has no voice {voice!r}; expected e.g. 'en-us+m3' (see espeak_voices())."
            )
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, range_)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self.chunks, self.events = [], []
        raw = text.encode()
        self.lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _UTF8, None, None)
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return audio, list(self.events)


_ENGINE: _Espeak | None = None


def synthesize(
    text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, range_: int = 50
) -> Utterance:
    """Speak ``text`` with an espeak-ng ``voice`` (``accent+variant``), ``rate`` in words
    per minute, ``pitch`` and pitch ``range_`` in 0..100; 16 kHz float32 samples with
    word timings."""
    from scipy.signal import resample_poly

    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    audio, events = _ENGINE.speak(text, voice, rate, pitch, range_)
    src_rate = _ENGINE.rate
    g = np.gcd(RATE, src_rate)
    samples = resample_poly(audio.astype(np.float32) / 32768.0, RATE // g, src_rate // g)
    samples = samples.astype(np.float32)
    end = next((s for kind, _, s in events if kind == _END), len(audio))
    words = _word_times(text, events, end, src_rate)
    return Utterance(text, voice, samples, words)


def _word_times(
    text: str, events: list[tuple[int, int, int]], end: int, rate: int
) -> list[tuple[str, float | None, float | None]]:
    """Each word of ``text`` with the start and end (s) its espeak-ng word events give."""
    spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    starts: dict[int, int] = {}  # word index -> first sample
    for kind, pos, sample in events:
        k = next((i for i, (a, b, _) in enumerate(spans) if a <= pos - 1 < b), None)
        if kind == _WORD and k is not None:
            starts.setdefault(k, sample)
    words: list[tuple[str, float | None, float | None]] = []
    for k, (_, _, word) in enumerate(spans):
        if k not in starts:
            words.append((word, None, None))
            continue
        stop = end if k == len(spans) - 1 else starts.get(k + 1)
        words.append((word, starts[k] / rate, None if stop is None else stop / rate))
    return words


def espeak_voices(kind: str = "en") -> list[str]:
    """espeak-ng's voice names: ``"en"`` the English accents (formant voices, no MBROLA),
    ``"variant"`` the variants, used as ``accent+variant``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ImportError(
            "espeak-ng is not installed; on Debian or Ubuntu: apt-get install espeak-ng"
        )
    if kind == "variant":  # the files of voices/!v (the library accepts unknown ones silently)
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
        data = Path(version.stdout.split("Data at:", 1)[1].strip())
        return sorted(p.name for p in (data / "voices" / "!v").iterdir() if " " not in p.name)
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    out = subprocess.run([exe, f"--voices={kind}"], capture_output=True, text=True, check=True)
    names = []
    for line in out.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 5 or cols[4].startswith("mb/") or cols[1] == "variant":
            continue  # MBROLA voices need extra packages; variants are listed apart
        # the library knows a voice by its language (en-us) or, failing that, its file (en)
        for name in (cols[1], cols[4].split("/", 1)[1]):
            if _ENGINE.lib.espeak_SetVoiceByName(name.encode()) == 0:
                names.append(name)
                break
    return sorted(set(names))


def add_noise(
    samples: np.ndarray, snr_db: float, rng: np.random.Generator, kind: str = "white"
) -> np.ndarray:
    """``samples`` plus ``kind`` noise (white, pink 1/f, brown 1/f²) at ``snr_db`` dB below
    the speech power (measured over samples louder than 1 % of the peak)."""
    if kind not in NOISES:
        raise InputError(f"noise kind must be one of {NOISES}, got {kind!r}")
    n = len(samples)
    white = rng.standard_normal(n)
    if kind != "white":  # shape the spectrum: amplitude 1/f^(1/2) (pink) or 1/f (brown)
        spec = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
        spec /= np.sqrt(f) if kind == "pink" else f
        white = np.fft.irfft(spec, n)
    speech = samples[np.abs(samples) > 0.01 * (np.abs(samples).max() + 1e-12)]
    power = float(np.mean(speech**2)) if len(speech) else 1e-8
    noise = white / np.sqrt(np.mean(white**2) + 1e-20) * np.sqrt(power / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)
