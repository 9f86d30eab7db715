"""Audio sources for ``edgeseq stream``: a WAV file, or raw little-endian PCM on stdin.

Both yield float32 sample blocks in [-1, 1); a model that takes fixed windows buffers them
(see :mod:`edgeseq.runtime._window`), so block sizes are free. A WAV file is resampled
(linear interpolation) only when the model's contract records a sample rate
(``model.extra["rate"]``) that differs from the file's, with a note on stderr.
:func:`check_rate` refuses samples the model would read as another rate: raw PCM at a
``--rate`` other than the recorded one, or a sample-rate constant (``--constant sr=N``)
other than the rate the samples arrive at.
"""

from __future__ import annotations

import sys
import wave
from collections.abc import Iterator
from typing import BinaryIO

import click
import numpy as np

__all__ = [
    "PCM_FORMATS",
    "check_rate",
    "is_wav",
    "pcm_blocks",
    "resample",
    "stream_audio",
    "wav_samples",
]

PCM_FORMATS = {"s16le": ("<i2", 32768.0), "f32le": ("<f4", 1.0)}
_BLOCK = 4096  # samples read from a pipe at a time


def is_wav(path: str) -> bool:
    if path == "-":
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling of 1-D ``x`` from ``rate`` to ``target`` Hz."""
    if rate == target or not len(x):
        return x
    n = int(len(x) * target / rate)
    return np.interp(np.arange(n) * rate / target, np.arange(len(x)), x).astype(np.float32)


def wav_samples(path: str, target: int | None, note=None) -> tuple[np.ndarray, int]:
    """A WAV file's samples as float32 mono (channels averaged), resampled to ``target``
    (``note(message)`` says whether it was, and at what rate the samples are fed)."""
    try:
        with wave.open(path, "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise click.ClickException(
            f"{path}: expected a PCM WAV file, got one wave cannot read ({exc})"
        ) from None
    kinds = {1: ("u1", 128.0, 128.0), 2: ("<i2", 32768.0, 0.0), 4: ("<i4", 2147483648.0, 0.0)}
    if width not in kinds:
        raise click.ClickException(
            f"{path}: expected 8, 16 or 32-bit PCM samples, got {8 * width}-bit"
        )
    dtype, scale, offset = kinds[width]
    x = (np.frombuffer(raw, dtype).astype(np.float32) - offset) / scale
    x = x.reshape(-1, channels).mean(axis=1).astype(np.float32)
    if note is not None:
        if target and target != rate:
            note(f"resampled {path} from {rate} Hz to {target} Hz (the contract's rate)")
        elif not target:
            note(
                f"{path} is fed at its own {rate} Hz: the contract records no sample rate "
                "(store one with edgeseq inspect MODEL --rate N --write-contract OUT.onnx)"
            )
    return (resample(x, rate, target), target) if target else (x, rate)


def check_rate(rate: int, recorded: int | None, constants: dict, source: str) -> None:
    """Refuse samples at ``rate`` Hz that the model would read as another rate: the rate
    its contract records (``recorded``), or a sample-rate constant (``--constant sr=N``)."""
    from edgeseq.errors import InputError
    from edgeseq.runtime._declared import rate_constant

    if recorded is not None and rate != recorded:
        raise InputError(
            f"{source} is at {rate} Hz; this model's contract records {recorded} Hz, and a "
            f"raw stream is not resampled. Expected samples at {recorded} Hz: record or "
            f"convert at that rate (e.g. arecord -r {recorded}), or pass a WAV file."
        )
    found = rate_constant(constants)
    if found is not None and found[1] != rate:
        name, value = found
        raise InputError(
            f"--constant {name}={value:g} tells the model its samples are at {value:g} Hz; "
            f"the samples of {source} are at {rate} Hz. Expected them to agree: pass the "
            "audio's rate, or store the rate to resample WAV files to: edgeseq inspect "
            "MODEL --rate N --write-contract OUT.onnx"
        )


def pcm_blocks(source: BinaryIO, fmt: str) -> Iterator[np.ndarray]:
    """float32 blocks of raw little-endian PCM read from ``source`` as it arrives."""
    dtype, scale = PCM_FORMATS[fmt]
    size = np.dtype(dtype).itemsize
    rest = b""
    while True:
        chunk = source.read(_BLOCK * size)
        if not chunk:
            break
        data = rest + chunk
        cut = len(data) - len(data) % size
        data, rest = data[:cut], data[cut:]
        if data:
            x = np.frombuffer(data, dtype).astype(np.float32) / scale
            if not np.isfinite(x).all():
                raise click.ClickException(f"--pcm {fmt}: the stream holds NaN or Inf samples")
            yield x
    if rest:
        click.echo(f"# {len(rest)} trailing bytes of a partial sample ignored", err=True)


def stream_audio(predictor, blocks: Iterator[np.ndarray], rate: int, out, fmt: str) -> int:
    """Feed sample blocks; print one line per output row (one per window). Returns rows."""
    window = predictor.engine.windows.window if predictor.engine.windows else None
    n = 0
    for block in blocks:
        y = predictor.step(block)
        values = y if not isinstance(y, dict) else next(iter(y.values()))
        arr = np.asarray(values)  # with windows: [k, ...], k = 0 when none completed
        rows = (arr.reshape(len(arr), -1) if arr.size else []) if window else [np.ravel(arr)]
        for row in rows:
            n += 1
            end = n * window / rate if window else None
            flat = [round(float(v), 6) for v in row]
            if fmt == "json":
                import json

                rec = {"window": n, "output": flat}
                if end is not None:
                    rec["end_s"] = round(end, 4)
                out.write(json.dumps(rec) + "\n")
            else:
                out.write(",".join(repr(v) for v in flat) + "\n")
        out.flush()
    return n


def stdin_binary() -> BinaryIO:
    return sys.stdin.buffer
