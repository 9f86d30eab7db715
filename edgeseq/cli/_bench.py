"""edgeseq bench: the benchmark suite, printed as markdown with each target beside its figure."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["command"]


def _cells(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from edgeseq.bench import CELLS

    cells = tuple(c.strip().lower() for c in value.split(",") if c.strip())
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise click.BadParameter(f"expected a comma list of {', '.join(CELLS)}; got {value!r}")
    return cells


@click.command("bench")
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="onnxruntime intra-op and PyTorch threads for every contender.",
)
@click.option(
    "--quick", is_flag=True, help="Tiny model, few iterations: checks the suite runs (~15 s)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the markdown here (e.g. BENCHMARKS.md); notes below its marker are kept.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every figure and the machine info as JSON here.",
)
@click.option(
    "--cells",
    default="lstm,gru,rnn",
    show_default=True,
    callback=_cells,
    help="Which reference models to run, comma-separated.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Instead: `edgeseq serve` under load from client processes (1/32/256 connections × "
    "1/10 frames per message, and a fixed 1,000 frames/s from 64), beside the in-process "
    "pool. With --out, only its section of the file is replaced.",
)
@click.option(
    "--serve-ray",
    is_flag=True,
    help="Instead: `edgeseq serve --ray` with 1 and 2 replicas (a local Ray cluster) beside "
    "`edgeseq serve`, 64 connections × 1/10 frames per message, CPU per frame, and the "
    "capacity arithmetic for 1,000,000 streams. With --out, only its section is replaced.",
)
@click.option(
    "--triton",
    is_flag=True,
    help="Instead: Triton's python backend (the real tritonserver, scripts/triton-setup) "
    "beside edgeseq serve and an in-process pool, 1 and 32 sequences × 1 frame per request. "
    "With --out, only its section of the file is replaced.",
)
def command(
    threads: int,
    quick: bool,
    out: Path | None,
    json_path: Path | None,
    cells: tuple[str, ...],
    serve: bool,
    serve_ray: bool,
    triton: bool,
) -> None:
    """Benchmark streaming on the reference models (40 inputs, 128 hidden, 2 layers, linear
    head; one per cell): per-frame latency against a hand-written onnxruntime loop, PyTorch
    eager and an Identity-model floor; many streams; chunk sizes; export modes and
    precisions; process footprint; export time. Prints markdown with every target beside
    its measured figure (met, missed or not available). Progress goes to stderr.

    \b
    Example:
      edgeseq bench --out BENCHMARKS.md --json bench.json
      edgeseq bench --quick --cells lstm
      edgeseq bench --serve --out BENCHMARKS.md      # the network server (about 1 minute)
      edgeseq bench --triton --out BENCHMARKS.md     # Triton vs edgeseq serving (~2 minutes)
      edgeseq bench --serve-ray --out BENCHMARKS.md  # Ray Serve replicas (~2 minutes)
    """
    if serve or triton or serve_ray:
        name = "serve" if serve else "serve_ray" if serve_ray else "triton"
        _section(name, threads, quick, out, json_path)
        return
    from edgeseq.bench import BenchConfig, render, run_bench, write_markdown

    config = (
        BenchConfig.quick_setting(cells=cells, threads=threads)
        if quick
        else BenchConfig(cells=cells, threads=threads)
    )
    results = run_bench(config, progress=lambda line: click.echo(line, err=True))
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if out is not None:
        write_markdown(results, out)
    click.echo(render(results))


def _section(
    name: str, threads: int, quick: bool, out: Path | None, json_path: Path | None
) -> None:
    """A section measured on its own (``--serve``, ``--triton``): its module has a config
    class, ``run``, ``render`` and ``write`` (which replaces only its part of ``--out``)."""
    import importlib

    mod = importlib.import_module(f"edgeseq.bench._{name}")
    config_cls, run, render_md, write = mod.SECTION
    config = config_cls.quick_setting(threads=threads) if quick else config_cls(threads=threads)
    results = run(config, progress=lambda line: click.echo(line, err=True))
    markdown = render_md(results)
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if out is not None:
        write(markdown, out)
    click.echo(markdown)
