"""edgeseq verify: PyTorch (whole sequence) vs the ONNX model streamed in chunks."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("verify")
@click.argument("reference")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="A state dict for a factory REFERENCE (torch.load(weights_only=True)).",
)
@click.option("--atol", type=float, default=1e-5, show_default=True, help="Max abs difference.")
@click.option("--rtol", type=float, help="Also pass a tensor whose max rel difference is <= this.")
@click.option("--time", "time_", type=click.IntRange(1), help="Frames per test sequence.")
@click.option("--vocab-size", type=click.IntRange(1), help="Token range for token models.")
@click.option("--per-case", is_flag=True, help="One table row per case, not the worst per tensor.")
def command(
    reference: str,
    model: str,
    weights: str | None,
    atol: float,
    rtol: float | None,
    time_: int | None,
    vocab_size: int | None,
    per_case: bool,
) -> None:
    """Check MODEL against REFERENCE: a checkpoint, or a package.module:function factory.

    Streams a sequence in chunks of 1, 3, 7 frames and whole, at batch 1 (through
    StreamingPredictor) and batch 3 (rows of different lengths, state fed explicitly), and
    compares every output and final state with PyTorch on the whole sequence. Also checks
    the graph's op types against its export mode. Exits 1 when anything fails.

    \b
    Examples:
      edgeseq verify model.pt model.onnx
      edgeseq verify mypkg.nets:build model.onnx --weights w.pt --atol 1e-4
      edgeseq verify model.pt model.int8.onnx --atol 0.05
    """
    from edgeseq.exporters._load import load_source
    from edgeseq.exporters.verify import verify

    source = load_source(reference, weights)
    report = verify(source.model, model, time=time_, vocab_size=vocab_size)
    click.echo(report.table(atol=atol, rtol=rtol, per_case=per_case))
    if not report.ok(atol=atol, rtol=rtol):
        fails = report.failures(atol=atol, rtol=rtol)
        raise click.ClickException(f"verification failed ({len(fails)} checks): {fails[0]}")
