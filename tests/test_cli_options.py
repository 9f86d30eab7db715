"""The CLI's shared option blocks and the "works with X only" check (edgeseq/cli/_options.py).

A shared block lists in --help as the options did when each command declared them; the
check refuses an option moved off its declared default without its flag, and lets the
default spelled out pass.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.cli._options import PREDICTOR_OPTIONS, only_with, options


@click.command()
@click.option("--on", is_flag=True)
@click.option("--count", type=int, default=2)
@click.option("--name", default=None)
@click.option("--pick", multiple=True, default=("a",))
def _probe(on: bool, count: int, name: str | None, pick: tuple[str, ...]) -> None:
    if not on:
        only_with("--on", ["name", "count", "pick"])
    click.echo("ran")


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        ([], None),
        (["--count", "2", "--pick", "a"], None),  # the defaults spelled out
        (["--on", "--count", "5", "--name", "x"], None),
        (["--count", "5"], "--count"),
        (["--name", "x", "--count", "5"], "--name"),  # the first of `names`, in their order
        (["--pick", "b"], "--pick"),
    ],
)
def test_only_with_refuses_an_option_moved_off_its_default(args, refused) -> None:
    result = CliRunner().invoke(_probe, args)
    if refused is None:
        assert result.exit_code == 0 and result.output == "ran\n", result.output
    else:
        assert result.exit_code == 2
        assert f"{refused} works with --on only; add --on." in result.output


def test_a_composed_block_lists_as_its_options_did() -> None:
    @click.command("block")
    @click.option("--first")
    @PREDICTOR_OPTIONS
    @click.option("--last")
    def together(**_: object) -> None: ...

    @click.command("block")
    @click.option("--first")
    @click.option(
        "--device", default="cpu", show_default=True, help="cpu, cuda, or a provider name."
    )
    @click.option(
        "--threads",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="onnxruntime threads.",
    )
    @click.option("--last")
    def apart(**_: object) -> None: ...

    assert [p.name for p in together.params] == ["first", "device", "threads", "last"]
    runner = CliRunner()
    assert runner.invoke(together, ["--help"]).output == runner.invoke(apart, ["--help"]).output
    assert options()(apart) is apart


@pytest.mark.parametrize("option", ["--ray-address=auto", "--replicas=3", "--replica-cpus=2",
                                    "--lease-seconds=9"])  # fmt: skip
def test_serve_refuses_ray_options_without_ray(option, tmp_path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "m.onnx"), option])
    flag = option.split("=")[0]
    assert result.exit_code == 2 and f"{flag} works with --ray only; add --ray." in result.output


def test_export_runtime_needs_verify(tmp_path) -> None:
    factory = ["--factory", "test_export_support:build_user", "--example-shape", "2,6,3"]
    out = ["-o", str(tmp_path / "m.onnx")]
    result = CliRunner().invoke(main, ["export", *factory, *out, "--runtime", "tract"])
    assert result.exit_code == 2
    assert "--runtime chooses where --verify runs; add --verify" in result.output
    assert not (tmp_path / "m.onnx").exists()
