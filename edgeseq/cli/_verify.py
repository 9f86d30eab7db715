"""edgeseq verify: PyTorch (whole sequence) vs the ONNX model streamed in chunks."""

from __future__ import annotations

import click

__all__ = ["RUNTIME_NAMES", "TOLERANCE", "check", "command", "runtime_option"]

# the names of edgeseq.exporters.RUNTIMES, here so `--help` needs no torch or onnx
RUNTIME_NAMES = ("onnxruntime", "openvino", "tract", "reference")


def runtime_option(help: str):  # type: ignore[no-untyped-def]
    """``--runtime`` (repeatable, default onnxruntime): where verify runs the ONNX side;
    `edgeseq verify` and `edgeseq export --verify` each say it in their own words."""
    return click.option(
        "--runtime",
        "runtimes",
        multiple=True,
        type=click.Choice(RUNTIME_NAMES),
        default=("onnxruntime",),
        show_default=True,
        help=help,
    )


class _Tolerance(click.ParamType):
    """A finite number >= 0 (a NaN or negative tolerance would fail every comparison)."""

    name = "tolerance"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"expected a number such as 1e-5, got {value!r}", param, ctx)
        if not (number >= 0 and number != float("inf")):
            self.fail(f"expected a finite number >= 0, got {value!r}", param, ctx)
        return number


TOLERANCE = _Tolerance()


@click.command("verify")
@click.argument("reference")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="A state dict for a factory REFERENCE (torch.load(weights_only=True)).",
)
@click.option("--atol", type=TOLERANCE, default=1e-5, show_default=True, help="Max abs difference.")
@click.option(
    "--rtol", type=TOLERANCE, help="Also pass a tensor whose max rel difference is <= this."
)
@click.option("--time", "time_", type=click.IntRange(1), help="Frames per test sequence.")
@click.option("--vocab-size", type=click.IntRange(1), help="Token range for token models.")
@click.option("--per-case", is_flag=True, help="One table row per case, not the worst per tensor.")
@runtime_option(
    "Run the ONNX side on this runtime, through its own API (repeat for several). "
    "openvino and tract need `pip install 'edgeseq[runtimes]'`."
)
def command(
    reference: str,
    model: str,
    weights: str | None,
    atol: float,
    rtol: float | None,
    time_: int | None,
    vocab_size: int | None,
    per_case: bool,
    runtimes: tuple[str, ...],
) -> None:
    """Check MODEL against REFERENCE: a checkpoint, or a package.module:function factory.

    Streams a sequence in chunks of 1, 3, 7 frames and whole, at batch 1 (through
    StreamingPredictor) and batch 3 (rows of different lengths, state fed explicitly), and
    compares every output and final state with PyTorch on the whole sequence. Also checks
    the graph's op types against its export mode. Exits 1 when anything fails.

    \b
    With --runtime openvino|tract|reference the same table is computed on that runtime
    (OpenVINO in f32; reference is onnx.reference, the spec's own semantics); a runtime
    that cannot run the file (e.g. tract with a lengths input) fails with the reason.

    \b
    Examples:
      edgeseq verify model.pt model.onnx
      edgeseq verify mypkg.nets:build model.onnx --weights w.pt --atol 1e-4
      edgeseq verify model.pt model.int8.onnx --atol 0.05
      edgeseq verify model.pt model.onnx --runtime openvino --runtime tract
    """
    from edgeseq.exporters._load import load_source
    from edgeseq.exporters._runtimes import require_runtime

    for runtime in runtimes:  # a missing runtime: one line saying what to install, up front
        require_runtime(runtime)
    source = load_source(reference, weights)
    check(source.model, model, runtimes, atol, rtol, per_case, time=time_, vocab_size=vocab_size)


def check(
    module: object,
    model: str,
    runtimes: tuple[str, ...],
    atol: float,
    rtol: float | None = None,
    per_case: bool = False,
    **kwargs: object,
) -> None:
    """Verify ``model`` on each runtime, print one table each; raise if any failed."""
    from edgeseq.exporters.verify import verify

    failed = []
    for i, runtime in enumerate(dict.fromkeys(runtimes)):
        report = verify(module, model, runtime=runtime, **kwargs)  # type: ignore[arg-type]
        click.echo(("\n" if i else "") + report.table(atol=atol, rtol=rtol, per_case=per_case))
        fails = report.failures(atol=atol, rtol=rtol)
        if fails:
            failed.append(
                f"{runtime}: {fails[0]}" + (f" (+{len(fails) - 1} more)" if len(fails) > 1 else "")
            )
    if failed:
        raise click.ClickException("verification failed on " + "; ".join(failed))
