"""edgeseq stream: frames in (CSV file or stdin), one output line per frame out, as they come."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import click

__all__ = ["command", "stream_lines"]


def _parse(line: str, delimiter: str, lineno: int) -> list[float] | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        return [float(v) for v in text.split(delimiter)]
    except ValueError:
        if lineno == 1:  # a header row
            return None
        raise click.ClickException(
            f"line {lineno}: expected {delimiter!r}-separated numbers, got {text[:60]!r}"
        ) from None


def stream_lines(
    predictor,
    source: TextIO,
    out: TextIO,
    *,
    delimiter: str = ",",
    fmt: str = "csv",
    precision: int = 6,
) -> int:
    """Feed each CSV line of ``source`` as one frame; write one output line per frame.

    Returns the number of frames streamed. Output is flushed after every line so the
    command works at the end of a live pipe.
    """
    labels = predictor.contract.model.labels
    n = 0
    for lineno, line in enumerate(iter(source.readline, ""), start=1):
        frame = _parse(line, delimiter, lineno)
        if frame is None:
            continue
        y = predictor.step(frame)
        values = y if not isinstance(y, dict) else next(iter(y.values()))
        flat = [round(float(v), precision) for v in getattr(values, "flat", [values])]
        n += 1
        if fmt == "json":
            rec: dict = {"frame": n, "output": flat}
            if labels and len(flat) == len(labels):
                rec["label"] = labels[max(range(len(flat)), key=flat.__getitem__)]
            out.write(json.dumps(rec) + "\n")
        else:
            text = delimiter.join(repr(v) for v in flat)
            if labels and len(flat) == len(labels):
                text += delimiter + labels[max(range(len(flat)), key=flat.__getitem__)]
            out.write(text + "\n")
        out.flush()
    return n


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
@click.option("-d", "--delimiter", default=",", show_default=True, help="Field separator.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="Output line format.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, or a provider name.")
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads.")
@click.option("--state", "states", multiple=True, help="State pair IN:OUT[:SHAPE], as for inspect.")
@click.option(
    "--constant", "constants", multiple=True, help="Constant input NAME=VALUE, e.g. sr=16000."
)
@click.option("--context", type=click.IntRange(min=0), help="Frames of left context per call.")
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

    Each input line is one frame: its feature values separated by the delimiter (a
    header line and lines starting with # are skipped). The model's state is carried
    from line to line, so this works at the end of a live pipe. Audio goes in as a WAV
    file (-i speech.wav; resampled only if the contract records another rate) or as raw
    PCM on stdin (--pcm s16le --rate 16000); a model that takes fixed windows prints one
    line per window.

    \b
    Examples:
      edgeseq stream model.onnx -i held_out.csv
      tail -f /var/log/imu.csv | edgeseq stream model.onnx --format json
      edgeseq stream silero_vad.onnx -i speech.wav --constant sr=16000 --context 64 --window 512
      arecord -f S16_LE -r 16000 -c 1 -t raw | edgeseq stream vad.edgeseq.onnx \\
          --constant sr=16000 --pcm s16le --rate 16000
      edgeseq stream --url ws://gateway:8765 -i held_out.csv     # the same lines, remotely
    """
    if (model is None) == (url is None):
        raise click.UsageError("give either MODEL (stream locally) or --url (stream to a server)")
    if url is not None:
        _remote(url, token_file, source, delimiter, fmt)
        return
    from edgeseq.cli._audio import is_wav, pcm_blocks, stdin_binary, stream_audio, wav_samples
    from edgeseq.cli._inspect import _pairs, constants_option
    from edgeseq.runtime import StreamingPredictor

    values = constants_option(constants)
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise click.BadParameter(f"{missing[0]} needs a value: NAME=VALUE", param_hint="--constant")
    if (pcm is None) != (rate is None):
        raise click.BadParameter("--pcm and --rate go together", param_hint="--pcm/--rate")
    predictor = StreamingPredictor(
        model, device=device, threads=threads, state=_pairs(states),
        constants=values or None, context=context, window=window,
    )  # fmt: skip
    if pcm is not None:
        if source != "-":
            raise click.BadParameter("--pcm reads stdin; drop -i", param_hint="--pcm")
        n = stream_audio(predictor, pcm_blocks(stdin_binary(), pcm), rate, sys.stdout, fmt)
        click.echo(f"# {n} outputs streamed", err=True)
        return
    if is_wav(source):
        target = predictor.contract.model.extra.get("rate")
        samples, sr = wav_samples(source, target)
        blocks = (samples[i : i + 4096] for i in range(0, len(samples), 4096))
        n = stream_audio(predictor, blocks, sr, sys.stdout, fmt)
        click.echo(f"# {n} outputs streamed from {len(samples) / sr:.2f} s of audio", err=True)
        return
    with click.open_file(source, "r") as text:
        n = stream_lines(predictor, text, sys.stdout, delimiter=delimiter, fmt=fmt)
    click.echo(f"# {n} frames streamed", err=True)


def _remote(url: str, token_file: str | None, source: str, delimiter: str, fmt: str) -> None:
    """CSV lines through an `edgeseq serve` stream: the same lines as local streaming."""
    from edgeseq.client import StreamClient, load_tokens

    token = load_tokens(token_file)[0] if token_file else None
    with click.open_file(source, "r") as text, StreamClient(url, token) as client:
        n = stream_lines(client, text, sys.stdout, delimiter=delimiter, fmt=fmt)
    click.echo(f"# {n} frames streamed through {url}", err=True)
