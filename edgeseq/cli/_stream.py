"""edgeseq stream: frames in (CSV file or stdin), one output line per frame out, as they come.

The frames come from a source in :mod:`edgeseq.cli._frames` (which reads and numbers
them); this module feeds them to a :class:`~edgeseq.runtime.StreamingPredictor`, applies
the ``--on-error`` policy to bad lines and formats the outputs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import click

from edgeseq.cli._frames import BadRecord, Frame, FrameLayout
from edgeseq.cli._options import PREDICTOR_OPTIONS

__all__ = ["CsvOptions", "StreamCounts", "command", "stream_frames", "stream_whole"]


@dataclass
class StreamCounts:
    """What a stream did: frames fed and bad input records skipped."""

    frames: int = 0
    skipped: int = 0


class _Writer:
    """One output line per frame: the values (and the likeliest label for classifiers)."""

    def __init__(self, out: TextIO, labels: list[str] | None, fmt: str, delimiter: str) -> None:
        self.out, self.labels, self.fmt, self.delimiter = out, labels, fmt, delimiter
        self.n = 0

    def write(self, values: Any, precision: int = 6) -> None:
        flat = [round(float(v), precision) for v in getattr(values, "flat", [values])]
        self.n += 1
        label = None
        if self.labels and len(flat) == len(self.labels):
            label = self.labels[max(range(len(flat)), key=flat.__getitem__)]
        if self.fmt == "json":
            rec: dict[str, Any] = {"frame": self.n, "output": flat}
            if label is not None:
                rec["label"] = label
            self.out.write(json.dumps(rec) + "\n")
        else:
            text = self.delimiter.join(repr(v) for v in flat)
            self.out.write(text + (self.delimiter + label if label is not None else "") + "\n")
        self.out.flush()  # at the end of a live pipe, each line shows as soon as it exists


def _first_output(y: Any) -> Any:
    return y if not isinstance(y, dict) else next(iter(y.values()))


def stream_frames(
    predictor,
    frames: Iterable[Frame | BadRecord],
    out: TextIO,
    *,
    on_error: str = "stop",
    fmt: str = "csv",
    delimiter: str = ",",
    warn=None,
) -> StreamCounts:
    """Feed each frame as it arrives and write one output line for it.

    A bad record (or a frame the predictor refuses; its state is then unchanged) raises
    :class:`~edgeseq.errors.InputError` naming its place with ``on_error="stop"``; with
    ``"skip"`` its message goes to ``warn`` and streaming goes on.
    """
    from edgeseq.errors import InputError, ProtocolError

    writer = _Writer(out, predictor.contract.model.labels, fmt, delimiter)
    windowed = _windows(predictor) is not None  # a step returns [k, out]: k windows
    counts = StreamCounts()
    for item in frames:
        if isinstance(item, Frame):
            try:
                y = predictor.step(item.values)
            except (InputError, ProtocolError) as exc:  # refused; the state is unchanged
                item = BadRecord(item.where, str(exc))
            else:
                counts.frames += 1
                _write_rows(writer, y, windowed)
                continue
        counts.skipped += _bad(item, on_error, warn)
    return counts


def _windows(predictor) -> Any:
    """The predictor's window plan (None without windows; a remote client has none)."""
    return getattr(getattr(predictor, "engine", None), "windows", None)


def _write_rows(writer: _Writer, y: Any, windowed: bool) -> None:
    values = _first_output(y)
    if not windowed:
        writer.write(values)
        return
    import numpy as np

    rows = np.asarray(values)  # [k, ...]: k = 0 until a window completes
    for row in rows.reshape(rows.shape[0], -1) if rows.size else []:
        writer.write(row)


def _bad(item: BadRecord, on_error: str, warn) -> int:
    from edgeseq.errors import InputError

    if on_error == "stop":
        raise InputError(item.message + " (--on-error skip reports bad lines and goes on)")
    (warn or (lambda _m: None))(f"skipped {item.message}")
    return 1


def stream_whole(
    predictor, frames: Iterable[Frame | BadRecord], out: TextIO, *, on_error: str = "stop",
    fmt: str = "csv", delimiter: str = ",", warn=None,
) -> StreamCounts:  # fmt: skip
    """Read every frame, run them as one sequence, write one line per output frame."""
    import numpy as np

    from edgeseq.errors import InputError

    counts, values = StreamCounts(), []
    for item in frames:
        if isinstance(item, BadRecord):
            counts.skipped += _bad(item, on_error, warn)
        else:
            values.append(item.values)
    if not values:
        raise InputError("the input holds no frames (only blank lines, comments or a header)")
    y = np.asarray(_first_output(predictor.step(np.stack(values))))
    timed = predictor.contract.data_outputs()[0].time_axis is not None
    timed = timed or _windows(predictor) is not None
    writer = _Writer(out, predictor.contract.model.labels, fmt, delimiter)
    for row in y if timed else [y]:
        writer.write(row)
    counts.frames = len(values)
    return counts


def _check_streamable(predictor, model: str, whole: bool) -> None:
    from edgeseq.errors import InputError

    if predictor.contract.frames.dtype.startswith(("int", "uint")):
        raise InputError(
            f"{model} takes token ids (a text model); `edgeseq stream` feeds rows of numbers. "
            "Generate text with: edgeseq generate MODEL --prompt TEXT"
        )
    if not predictor.contract.model.stateful and not whole:
        raise InputError(
            f"{model} is an offline model (exported with --offline: it reads each sequence "
            "whole, e.g. bidirectional or attention over time), so it cannot stream line by "
            "line. Pass --whole to read the input to its end and run it as one sequence."
        )


@click.command("stream")
@click.argument("model", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--url",
    default=None,
    help="Stream CSV frames through an `edgeseq serve` server (ws://HOST:PORT), not a local MODEL.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --url: a file whose first token is sent as 'Authorization: Bearer'.",
)
@click.option(
    "-i",
    "--input",
    "source",
    default="-",
    show_default=True,
    help="CSV file of frames, one per line, or a WAV file ('-' reads stdin).",
)
@click.option(
    "-d", "--delimiter", default=",", show_default=True, help="Field separator ('\\t': a tab)."
)
@click.option(
    "--columns",
    default="",
    help="CSV columns to feed, in the model's feature order: header names or 1-based "
    "positions (e.g. temp,pressure or 2,3). Default: the feature names recorded at train "
    "time when the input has a header, else every column.",
)
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="A bad CSV line (not numbers, wrong count, NaN): stop there with its line number "
    "(exit 1), or report it on stderr and go on with the next line (the state is unchanged).",
)
@click.option(
    "--whole",
    is_flag=True,
    help="Read the CSV input to its end and run it as one sequence (one output line per "
    "frame). Needed for offline models (bidirectional, attention over time).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="Output line format.",
)
@PREDICTOR_OPTIONS
@click.option("--state", "states", multiple=True, help="State pair IN:OUT[:SHAPE], as for inspect.")
@click.option(
    "--constant", "constants", multiple=True, help="Constant input NAME=VALUE, e.g. sr=16000."
)
@click.option(
    "--context",
    type=click.IntRange(min=0),
    help="Frames of left context per call, for a model with a stateless front-end (a VAD's "
    "conv); refused for a model whose state already holds its past.",
)
@click.option("--window", type=click.IntRange(min=1), help="New samples per call (buffered).")
@click.option(
    "--pcm",
    type=click.Choice(["s16le", "f32le"]),
    help="Read raw little-endian PCM samples from stdin (with --rate) instead of CSV lines.",
)
@click.option("--rate", type=click.IntRange(min=1), help="Sample rate of --pcm input, in Hz.")
def command(
    model: str | None,
    url: str | None,
    token_file: str | None,
    source: str,
    delimiter: str,
    columns: str,
    on_error: str,
    whole: bool,
    fmt: str,
    device: str,
    threads: int,
    states: tuple[str, ...],
    constants: tuple[str, ...],
    context: int | None,
    window: int | None,
    pcm: str | None,
    rate: int | None,
) -> None:
    """Stream frames through MODEL, printing one output line per frame (or per window).

    Each input line is one frame: its feature values separated by the delimiter. Blank
    lines and lines starting with # are skipped; a first line of names is a header.
    Every other line must be a frame: a line that is not (an empty or non-numeric value,
    the wrong count, NaN) stops the stream with its line number, or is reported and
    skipped with --on-error skip. The model's state is carried from line to line, so
    this works at the end of a live pipe. Audio goes in as a WAV file (-i speech.wav;
    resampled only if the contract records another rate, with a note on stderr) or as raw
    PCM on stdin (--pcm s16le --rate 16000, at the contract's rate); a --constant sr=N that
    differs from the audio's rate is refused. A model that takes fixed windows prints one
    line per window.

    \b
    Examples:
      edgeseq stream model.onnx -i held_out.csv
      edgeseq stream model.onnx -i log.csv --columns temp,pressure
      tail -f /var/log/imu.csv | edgeseq stream model.onnx --on-error skip --format json
      edgeseq stream bidirectional.onnx -i sequence.csv --whole
      edgeseq stream silero_vad.onnx -i speech.wav --constant sr=16000 --context 64 --window 512
      arecord -f S16_LE -r 16000 -c 1 -t raw | edgeseq stream vad.edgeseq.onnx \\
          --constant sr=16000 --pcm s16le --rate 16000
      edgeseq stream --url ws://gateway:8765 -i held_out.csv     # the same lines, remotely
    """
    if (model is None) == (url is None):
        raise click.UsageError("give either MODEL (stream locally) or --url (stream to a server)")
    picked = [c for c in columns.split(",") if c.strip()]
    delimiter = "\t" if delimiter == "\\t" else delimiter  # -d '\t' as typed
    csv = CsvOptions(source, delimiter, picked, on_error, whole, fmt)
    if url is not None:
        _remote(url, token_file, csv)
        return
    from edgeseq.cli._audio import (
        check_rate,
        is_wav,
        pcm_blocks,
        stdin_binary,
        stream_audio,
        wav_samples,
    )
    from edgeseq.cli._inspect import _pairs
    from edgeseq.cli._options import constants_option
    from edgeseq.runtime import LoadOptions, StreamingPredictor

    values = constants_option(constants, need_values=True)
    loading = LoadOptions(
        device=device, threads=threads, state=_pairs(states), constants=values or None,
        context=context, window=window,
    )  # fmt: skip
    if (pcm is None) != (rate is None):
        raise click.BadParameter("--pcm and --rate go together", param_hint="--pcm/--rate")
    audio = pcm is not None or is_wav(source)
    if audio and (picked or whole or on_error != "stop"):
        raise click.UsageError("--columns, --whole and --on-error are for CSV input, not audio")
    predictor = StreamingPredictor(model, options=loading)
    recorded = predictor.contract.model.extra.get("rate")
    if pcm is not None:
        if source != "-":
            raise click.BadParameter("--pcm reads stdin; drop -i", param_hint="--pcm")
        check_rate(rate, recorded, values, f"--pcm {pcm} --rate {rate}")  # type: ignore[arg-type]
        n = stream_audio(predictor, pcm_blocks(stdin_binary(), pcm), rate, sys.stdout, fmt)
        click.echo(f"# {n} outputs streamed", err=True)
        return
    if audio:
        notes: list[str] = []
        samples, sr = wav_samples(source, recorded, notes.append)
        check_rate(sr, None, values, source)  # before any note: a refusal is one line
        for note in notes:
            click.echo(f"# {note}", err=True)
        blocks = (samples[i : i + 4096] for i in range(0, len(samples), 4096))
        n = stream_audio(predictor, blocks, sr, sys.stdout, fmt)
        click.echo(f"# {n} outputs streamed from {len(samples) / sr:.2f} s of audio", err=True)
        return
    # a windowed model takes raw samples, one value a line, whatever its frames look like
    layout = FrameLayout(None) if _windows(predictor) is not None else None
    _stream_csv(predictor, model, csv, layout)


@dataclass(frozen=True)
class CsvOptions:
    """How `edgeseq stream` reads CSV input and writes its lines."""

    source: str
    delimiter: str
    columns: list[str]
    on_error: str
    whole: bool
    fmt: str


def _stream_csv(
    predictor, name: str, csv: CsvOptions, layout: FrameLayout | None = None, via: str = ""
) -> int:
    """CSV frames from ``csv.source`` through ``predictor`` (local, or a remote client)."""
    from edgeseq.cli._frames import FrameLayout, open_frames

    _check_streamable(predictor, name, csv.whole)
    layout = layout or FrameLayout.of(predictor.contract)
    warn = lambda message: click.echo(f"# {message}", err=True)  # noqa: E731
    run = stream_whole if csv.whole else stream_frames
    try:
        with open_frames(
            csv.source, layout, delimiter=csv.delimiter, columns=csv.columns
        ) as frames:
            counts = run(
                predictor, frames, sys.stdout, on_error=csv.on_error, fmt=csv.fmt,
                delimiter=csv.delimiter, warn=warn,
            )  # fmt: skip
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    n, k = counts.frames, counts.skipped
    skipped = f", {k} bad line{'s' if k != 1 else ''} skipped" if k else ""
    assumed = f"; {frames.assumed}" if frames.assumed else ""  # e.g. columns by position
    click.echo(f"# {n} frame{'s' if n != 1 else ''} streamed{via}{skipped}{assumed}", err=True)
    return n


def _remote(url: str, token_file: str | None, csv: CsvOptions) -> None:
    """CSV lines through an `edgeseq serve` stream: the same lines as local streaming."""
    from edgeseq.client import StreamClient, load_tokens

    token = load_tokens(token_file)[0] if token_file else None
    with StreamClient(url, token) as client:
        _stream_csv(client, url, csv, via=f" through {url}")
