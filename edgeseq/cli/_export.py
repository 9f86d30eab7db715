"""edgeseq export: a checkpoint or a factory's module -> streaming ONNX.

Optionally verified, quantized (int8/fp16) and converted to ORT format in the same run.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgeseq.cli._options import only_with
from edgeseq.cli._paths import refuse_overwriting_an_input
from edgeseq.cli._verify import TOLERANCE, runtime_option

__all__ = ["command"]


@click.command("export")
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    help="The ONNX file to write (one-to-many and seq2seq models also write an init model "
    "beside it).",
)
@click.option(
    "--factory",
    help="Instead of a checkpoint: package.module:function returning any nn.Module with "
    "RNN/LSTM/GRU layers (needs --example-shape).",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="A state dict for the factory's module (torch.load(weights_only=True)).",
)
@click.option(
    "--example-shape",
    help="Factory models: the input shape B,T,F (batch, time, features), e.g. 2,16,3.",
)
@click.option(
    "--example-dtype",
    type=click.Choice(["float32", "int64"]),
    default="float32",
    show_default=True,
    help="Factory models: float32 frames or int64 token ids.",
)
@click.option(
    "--mode",
    default=None,
    help="native: ONNX LSTM/GRU/RNN ops. unrolled: basic ops only (for NPUs and runtimes "
    "without recurrent ops), fixed --chunk frames per graph call. Default: native, or "
    "unrolled when a layer has no native op (an LSTM with proj_size), said in a note.",
)
@click.option(
    "--chunk",
    type=click.IntRange(1),
    help="unrolled mode: frames per graph call (default 16); shorter calls are padded.",
)
@click.option(
    "--backend",
    type=click.Choice(["torchscript", "dynamo"]),
    default="torchscript",
    show_default=True,
    help="torch.onnx exporter.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Factory models that cannot stream (bidirectional, attention over time): whole "
    "sequence per call, no state carried.",
)
@click.option(
    "--lengths/--no-lengths",
    default=None,
    help="Give the graph a lengths input (valid frames per row). Default: native graphs "
    "without it (they then run on every ONNX runtime: tract refuses and OpenVINO "
    "mis-computes a fed sequence_lens), unrolled graphs with it (a mask in basic ops that "
    "pads the fixed chunk). With it a StreamPool steps rows of different frame counts in "
    "one call, and can keep its state table on the GPU.",
)
@click.option(
    "--explain",
    "do_explain",
    is_flag=True,
    help="Print per layer how the model will stream (native op, unrolled, conv cache, cell "
    "loop, stateless, explicit state) or why it cannot, and write nothing; exit 1 if it "
    "cannot stream.",
)
@click.option(
    "--verify", "do_verify", is_flag=True, help="Check parity with PyTorch; exit 1 if it fails."
)
@runtime_option(
    "--verify on this ONNX runtime (repeat for several): onnxruntime, openvino, tract, "
    "or reference (onnx.reference)."
)
@click.option(
    "--atol", type=TOLERANCE, default=1e-5, show_default=True, help="--verify tolerance (max abs)."
)
@click.option(
    "--quantize",
    "quant",
    type=click.Choice(["int8", "fp16"]),
    help="Also write MODEL.<int8|fp16>.onnx and print what it trades.",
)
@click.option(
    "--ort",
    "ort",
    is_flag=True,
    help="Also write MODEL.ort and MODEL.required_operators.config for onnxruntime's "
    "minimal builds.",
)
def command(
    checkpoint: str | None,
    out: str,
    factory: str | None,
    weights: str | None,
    example_shape: str | None,
    example_dtype: str,
    mode: str | None,
    chunk: int | None,
    backend: str,
    offline: bool,
    lengths: bool | None,
    do_explain: bool,
    do_verify: bool,
    runtimes: tuple[str, ...],
    atol: float,
    quant: str | None,
    ort: bool,
) -> None:
    """Export CHECKPOINT (or --factory's module) as a streaming ONNX model.

    Every recurrent layer's, RNN cell's and causal convolution's state (and a
    forward(x, state) -> (y, state) model's own state) becomes a named state input/output
    pair recorded in the file's contract, so `edgeseq stream` and StreamingPredictor carry
    it between calls.

    \b
    Examples:
      edgeseq export model.pt -o model.onnx --verify
      edgeseq export model.pt -o model.onnx --mode unrolled --chunk 8 --verify
      edgeseq export model.pt -o model.onnx --verify --runtime openvino --runtime tract
      edgeseq export model.pt -o model.onnx --quantize int8 --ort
      edgeseq export --factory mypkg.nets:build --weights w.pt --example-shape 2,16,3 -o m.onnx
      edgeseq export --factory mypkg.nets:build --example-shape 2,16,3 --explain
    """
    from edgeseq.errors import ExportError
    from edgeseq.exporters import ExportOptions
    from edgeseq.exporters._load import (
        example_from_shape,
        explain_source,
        export_source,
        load_source,
    )
    from edgeseq.table import format_table

    if bool(checkpoint) == bool(factory):
        raise click.UsageError("give either CHECKPOINT or --factory package.module:function")
    if weights and not factory:
        raise click.UsageError("--weights goes with --factory")
    if not out and not do_explain:
        raise click.UsageError("give -o/--out, the ONNX file to write (or --explain)")
    refuse_overwriting_an_input(out, CHECKPOINT=checkpoint, **{"--weights": weights})
    options = ExportOptions(mode, chunk, backend, offline, lengths)  # type: ignore[arg-type]
    source = load_source(factory or checkpoint, weights)  # type: ignore[arg-type]
    example = example_from_shape(example_shape, example_dtype) if example_shape else None
    if example_shape and source.kind == "checkpoint":
        raise ExportError("--example-shape is for --factory models; a checkpoint knows its input")
    if do_explain:
        reports = explain_source(source, options, example)
        click.echo("\n\n".join(r.table() for r in reports))
        if not all(r.streams for r in reports):
            raise click.exceptions.Exit(1)
        return
    if not do_verify:
        only_with("--verify", ["runtimes"], "{option} chooses where {flag} runs; add {flag}")
    from edgeseq.exporters._runtimes import require_runtime

    for runtime in runtimes:  # missing: say which extra to install before exporting
        require_runtime(runtime)
    written = export_source(source, out, options, example)
    rows = []
    for path, contract in written.items():
        m = contract.model
        rows.append(
            (
                path,
                m.mode if m.stateful else "offline",
                m.chunk or "any",
                "yes" if contract.lengths else "no",
                len(contract.states),
                "yes" if m.stateful else "no (offline)",
                f"{Path(path).stat().st_size / 1024:.1f}",
            )
        )
    click.echo(format_table(["file", "mode", "chunk", "lengths", "states", "streams", "KiB"], rows))
    for contract in written.values():
        if contract.model.extra.get("mode_note"):
            click.echo(f"note: {contract.model.extra['mode_note']}")
    failed = ""
    if do_verify:
        from edgeseq.cli._verify import check

        click.echo("")
        try:
            check(source.model, out, runtimes, atol)
        except click.ClickException as exc:  # still quantize/convert, then fail
            failed = exc.message
    if quant:
        from edgeseq.exporters.quantize import quantize

        # a seq2seq encoder first, so the quantized decoder's contract can name its copy;
        # a one-to-many init model is a single Linear and stays fp32
        for path, contract in sorted(written.items(), key=lambda kv: str(kv[0]) == str(out)):
            if contract.model.extra.get("role") in ("init", "step"):  # step: with its model
                continue
            dst = Path(path).with_suffix(f".{quant}.onnx")
            click.echo("")
            click.echo(quantize(path, dst, quant).table())  # type: ignore[arg-type]
    if ort:
        from edgeseq.exporters.ort import to_ort

        click.echo("")
        for path in written:
            art = to_ort(path)
            click.echo(f"wrote {art.ort} and {art.operators_config}")
    if failed:
        raise click.ClickException(f"{failed} (--atol {atol:g}, see above)")
