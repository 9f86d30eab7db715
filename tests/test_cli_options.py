"""The CLI's shared option blocks and the "works with X only" check (edgeseq/cli/_options.py).

A shared block lists in --help as the options did when each command declared them; the
check refuses an option moved off its declared default without its flag, and lets the
default spelled out pass.
"""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("args", [[], ["--max-wait-ms", "2"], ["--max-wait-ms=25"]])
def test_serve_max_wait_ms_is_accepted_and_said_to_do_nothing(args, monkeypatch) -> None:
    """Deprecated: still accepted (the server starts with the same options otherwise),
    and saying so is one line on stderr, only when the option is given (even at its
    default value), before the server starts."""
    import edgeseq.serve
    from edgeseq.cli._serve import DEPRECATED_MAX_WAIT

    started = []

    class FakeServer:
        def __init__(self, model, options) -> None:
            started.append(options)

        def run(self) -> int:
            return 0

    monkeypatch.setattr(edgeseq.serve, "Server", FakeServer)
    result = CliRunner().invoke(main, ["serve", "m.onnx", "--port", "0", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == (f"{DEPRECATED_MAX_WAIT}\n" if args else ""), result.stderr
    assert "no effect on the server" in DEPRECATED_MAX_WAIT and "\n" not in DEPRECATED_MAX_WAIT
    (options,) = started
    assert options.port == 0 and options.max_wait_ms == (25.0 if "=25" in "".join(args) else 2.0)


def test_export_runtime_needs_verify(tmp_path) -> None:
    factory = ["--factory", "test_export_support:build_user", "--example-shape", "2,6,3"]
    out = ["-o", str(tmp_path / "m.onnx")]
    result = CliRunner().invoke(main, ["export", *factory, *out, "--runtime", "tract"])
    assert result.exit_code == 2
    assert "--runtime chooses where --verify runs; add --verify" in result.output
    assert not (tmp_path / "m.onnx").exists()


# --constant: one parser (constants_option) for inspect, stream and triton
ACCEPTED = [
    ("sr=16000", {"sr": 16000}),
    ("sr=1.6e4", {"sr": 16000.0}),
    ("sr=16E3", {"sr": 16000.0}),  # an upper-case exponent is a float too
    ("scale=0.5", {"scale": 0.5}),
    ("bias=1,2.5", {"bias": [1.0, 2.5]}),  # comma-separated: a 1-D array
    (" sr = 16000", {" sr ": 16000}),  # the name as typed; int() takes the spaces
]
REFUSED = [
    ("=16000", "expected NAME=VALUE, got '=16000'"),
    ("sr=", "expected NAME=VALUE with a number (e.g. sr=16000), got 'sr='"),
    ("sr=fast", "expected NAME=VALUE with a number (e.g. sr=16000), got 'sr=fast'"),
    ("sr=1,,2", "expected NAME=VALUE with a number (e.g. sr=16000), got 'sr=1,,2'"),
    ("sr=0x10", "expected NAME=VALUE with a number (e.g. sr=16000), got 'sr=0x10'"),
]


@pytest.mark.parametrize(("given", "expected"), ACCEPTED)
@pytest.mark.parametrize("need_values", [False, True])
def test_constant_accepted_forms(given: str, expected: dict, need_values: bool) -> None:
    from edgeseq.cli._options import constants_option

    got = constants_option((given,), need_values=need_values)
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name].tolist() == value
        assert type(got[name].tolist()) is type(value)  # int stays int, 1.5 float


@pytest.mark.parametrize(("given", "message"), REFUSED)
@pytest.mark.parametrize("need_values", [False, True])
def test_constant_refused_forms(given: str, message: str, need_values: bool) -> None:
    from edgeseq.cli._options import constants_option

    with pytest.raises(click.BadParameter, match=re.escape(message)):
        constants_option((given,), need_values=need_values)


def test_constant_name_alone_declares_it_where_no_value_is_needed() -> None:
    from edgeseq.cli._options import constants_option

    assert constants_option(("sr", "x=2")) == {"sr": None, "x": 2}
    with pytest.raises(click.BadParameter, match="sr needs a value: NAME=VALUE"):
        constants_option(("x=2", "sr"), need_values=True)


@pytest.fixture(scope="module")
def third_party():
    from _triton_support import third_party_model

    return third_party_model()  # a GRU with an int64 `scale` input given on every call


@pytest.mark.parametrize("command", ["inspect", "triton"])
@pytest.mark.parametrize(("given", "message"), [*REFUSED, ("scale", None)])
def test_inspect_and_triton_refuse_the_same_constants(
    command: str, given: str, message: str | None, third_party, tmp_path
) -> None:
    args = [command, str(third_party), "--constant", given]
    args += ["-o", str(tmp_path / "repo")] if command == "triton" else []
    result = CliRunner().invoke(main, args)
    if message is None and command == "inspect":  # NAME alone declares the input constant
        assert result.exit_code == 0, result.output
        assert re.search(r"input\s+scale\s.*constant", result.output), result.output
        return
    message = message or "scale needs a value: NAME=VALUE"
    assert result.exit_code == 2, result.output
    assert f"Invalid value for --constant: {message}" in result.output, result.output
    assert not (tmp_path / "repo").exists()


def test_triton_bakes_a_parsed_constant_and_the_runtime_checks_its_type(third_party, tmp_path):
    """Past the parser, what a value must be is the model's business: an int64 input takes
    ``scale=3``; ``scale=3.0`` parses (inspect takes it too) and is refused by the runtime's
    check, in one error line naming the type."""
    import onnx
    from onnx import numpy_helper

    for command in ("inspect", "triton"):
        args = [command, str(third_party), "--constant", "scale=3"]
        args += ["-o", str(tmp_path), "--name", "tp"] if command == "triton" else []
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (command, result.output)
    graph = onnx.load(str(tmp_path / "tp" / "1" / "model.onnx")).graph
    assert "scale" not in [i.name for i in graph.input]
    baked = [numpy_helper.to_array(t) for t in graph.initializer if t.name == "scale"]
    baked += [
        numpy_helper.to_array(a.t)
        for n in graph.node
        if n.op_type == "Constant" and "scale" in n.output
        for a in n.attribute
    ]
    assert [b.tolist() for b in baked] == [3], baked
    args = ["triton", str(third_party), "-o", str(tmp_path), "--name", "tp2"]
    result = CliRunner().invoke(main, [*args, "--constant", "scale=3.0"])
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]  # after the discovery warning
    assert last.startswith("Error: ") and "--constant 'scale': expected int64" in last, last
