"""edgeseq generate: sample text from a token model, streamed to the terminal as produced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from edgeseq.cli._options import PREDICTOR_OPTIONS

__all__ = ["command", "generate_text"]


def _source(text: str, encoder_is_text: bool) -> Any:
    """``--source``: text for a token encoder, else numbers ('a,b;c,d' = two frames)."""
    if encoder_is_text:
        return text
    import numpy as np

    try:
        rows = [[float(v) for v in row.split(",")] for row in text.split(";") if row.strip()]
        return np.asarray(rows[0] if len(rows) == 1 else rows, dtype=np.float32)
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated numbers (';' between frames), got {text[:60]!r}",
            param_hint="--source",
        ) from None


def generate_text(
    model: str,
    prompt: str,
    source: str | None,
    options: dict[str, Any],
    device: str = "cpu",
    threads: int | None = 1,
    beam: int | None = None,
    length_penalty: float = 0.0,
    memory: str | None = None,
) -> Iterator[str]:
    """Text pieces from MODEL: a language model (``prompt``), or a decoder whose first
    state comes from an encoder or a condition (``source``). ``options`` are the keyword
    arguments of both ``generate`` methods: ``max_tokens``, ``sampling``, ``unknown``; with
    ``beam`` the decoder's most probable text a beam search of that many hypotheses finds,
    ranked with GNMT's ``length_penalty`` (``sampling`` does not apply). ``memory``: a
    :class:`~edgeseq.runtime.TranslationMemory` file; the encoder then reads ``source``,
    the memory's separator and the memory's output for ``source``."""
    from edgeseq.runtime import EncoderDecoder, LoadOptions, StreamingPredictor

    loading = LoadOptions(device=device, threads=threads)  # checked once, for every model
    predictor = StreamingPredictor(model, options=loading)
    facts = predictor.contract.model
    if facts.extra.get("init_model") and facts.topology in ("seq2seq", "one_to_many"):
        if source is None:
            what = "source text" if facts.topology == "seq2seq" else "condition values"
            raise click.UsageError(f"this is a {facts.topology} decoder: pass --source ({what}).")
        pair = EncoderDecoder(model, options=loading)
        text = pair.encoder is not None and pair.encoder.engine.frames.is_int
        if memory is not None:
            if not text:
                raise click.UsageError("--memory is for decoders whose encoder reads text.")
            from edgeseq.runtime import TranslationMemory

            source = TranslationMemory.load(memory).encoder_input(source)
        if beam is None:
            return pair.generate(_source(source, text), **options)
        return _beam_text(pair, _source(source, text), beam, options, length_penalty)
    if source is not None or memory is not None:
        what = "--source" if source is not None else "--memory"
        raise click.UsageError(f"{what} is for encoder-decoder models; use --prompt.")
    if beam is not None:
        raise click.UsageError("--beam is for encoder-decoder models (with --source).")
    if not predictor.engine.frames.is_int or not predictor.contract.preprocessing.vocab:
        raise click.ClickException(
            f"{model} takes {predictor.engine.frames.describe()}, not text: `edgeseq generate` "
            "needs a text model with a vocabulary (edgeseq train --task generate, then edgeseq "
            "export). Stream numeric frames with: edgeseq stream MODEL"
        )
    return predictor.generate(prompt, **options)


def _beam_text(
    pair: Any, source: Any, width: int, options: dict[str, Any], alpha: float
) -> Iterator[str]:
    """The pieces of the beam's best output (agreed tokens first, as they are found)."""
    from edgeseq.runtime.generate import BOS, EOS, has_specials

    vocab = pair.vocab
    if not vocab or not has_specials(vocab):
        raise click.ClickException(
            "--beam needs the decoder's vocabulary with <pad>, <unk>, <bos>, <eos> first; "
            "this decoder's contract has none."
        )
    ids = pair.beam(
        source, BOS, EOS, options["max_tokens"], width, length_penalty=alpha,
        unknown=options["unknown"],
    )  # fmt: skip
    return (vocab[t] for t in ids)


@click.command("generate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-p", "--prompt", default="", help="Text to start from (default: <bos>).")
@click.option(
    "--source", help="Encoder-decoder models: text to translate, or condition values 'a,b,c'."
)
@click.option(
    "--memory",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="With --source: a translation memory saved beside the model "
    "(TranslationMemory.save, e.g. example 06's translate.memory.json). The encoder then "
    "reads the source, the memory's separator (U+001E) and the output the memory recalls "
    "for the most similar stored source, as the model was trained to.",
)
@click.option(
    "-n",
    "--max-tokens",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Tokens to generate at most (<eos> ends sooner).",
)
@click.option(
    "-t",
    "--temperature",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Softmax temperature; 0 is greedy.",
)
@click.option("--top-k", type=click.IntRange(min=1), help="Sample among the k likeliest tokens.")
@click.option(
    "--top-p", type=click.FloatRange(0, 1, min_open=True), help="Nucleus: smallest set of mass p."
)
@click.option(
    "--seed", type=click.IntRange(min=0), help="Random seed: the same seed gives the same text."
)
@click.option(
    "--stop",
    multiple=True,
    help="Stop before this string; \\n and \\t are understood (repeatable).",
)
@click.option(
    "--unknown",
    type=click.Choice(["error", "unk", "skip"]),
    default="error",
    show_default=True,
    help="Characters of --prompt/--source text not in the vocabulary: stop and list them, "
    "feed each as <unk>, or drop them (the prompt is still echoed as typed).",
)
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    help="Encoder-decoder models: decode the most probable text a beam search of this many "
    "hypotheses finds (no sampling options with it; text shows as the hypotheses agree).",
)
@click.option(
    "--length-penalty",
    type=click.FloatRange(min=0),
    metavar="A",
    help="With --beam: rank hypotheses by log-probability / ((5 + length) / 6) ** A "
    "(GNMT's length penalty; length counts <eos>). Without it (A = 0) the beam ranks by "
    "total log-probability, and as every token costs some, short outputs are favoured; "
    "0.6-1.0 lets longer outputs compete.",
)
@PREDICTOR_OPTIONS
def command(
    model: str,
    prompt: str,
    source: str | None,
    max_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    stop: tuple[str, ...],
    unknown: str,
    beam: int | None,
    length_penalty: float | None,
    memory: str | None,
    device: str,
    threads: int,
) -> None:
    """Generate text with MODEL, printing each piece as soon as it is sampled.

    MODEL is a token model whose contract holds its vocabulary (exported from a
    `--task generate` checkpoint), or the decoder of a translation/captioning pair.

    \b
    Examples:
      edgeseq generate lm.onnx --prompt "Once upon" --max-tokens 80 --seed 1
      edgeseq generate lm.onnx -p "def " -t 0.7 --top-p 0.9 --stop "\\n\\n"
      edgeseq generate translate.onnx --source "good morning" -t 0
      edgeseq generate translate.onnx --source "good morning" --beam 5
      edgeseq generate translate.onnx --source "good morning" --beam 5 --length-penalty 0.6
      edgeseq generate translate.onnx --source "Save the file" --memory translate.memory.json
      edgeseq generate lm.onnx -p "Café au lait" --unknown unk   # é is not in the vocabulary
    """
    from edgeseq.runtime import Sampling

    stops = tuple(s.replace("\\n", "\n").replace("\\t", "\t") for s in stop)
    sampling = Sampling(temperature, top_k, top_p, seed, stops)
    options = {"max_tokens": max_tokens, "sampling": sampling, "unknown": unknown}
    if beam is not None and sampling != Sampling():
        raise click.UsageError(
            "--beam decodes the most probable text, so it takes no sampling options: drop "
            "--temperature, --top-k, --top-p, --seed and --stop, or drop --beam to sample."
        )
    if length_penalty is not None and beam is None:
        raise click.UsageError(
            "--length-penalty ranks a beam search's hypotheses: add --beam N (e.g. --beam 5)."
        )
    alpha = length_penalty or 0.0
    if memory is not None and source is None:
        raise click.UsageError("--memory recalls an output for --source: pass --source TEXT.")
    pieces = generate_text(model, prompt, source, options, device, threads, beam, alpha, memory)
    click.echo(prompt if source is None else "", nl=False)  # the text reads on from the prompt
    for piece in pieces:
        click.echo(piece, nl=False)  # echo flushes: each piece shows as soon as it is sampled
    click.echo()
