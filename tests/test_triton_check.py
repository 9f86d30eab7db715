"""`edgeseq triton` and `--check`: a corrupted config is refused with the field named,
by Triton's schema or by the checks the schema cannot do; the CLI writes and checks."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.errors import RepositoryError
from edgeseq.exporters.triton import TritonOptions, check_repository, to_triton


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean repository per backend/strategy; each test corrupts a copy."""
    from _models import zoo

    root = tmp_path_factory.mktemp("triton-repos")
    for name, backend, strategy in [
        ("ort", "onnxruntime", "oldest"),
        ("direct", "onnxruntime", "direct"),
        ("py", "python", "oldest"),
    ]:
        to_triton(zoo.get("lstm"), root / name, name="m", backend=backend,
                  options=TritonOptions(strategy=strategy))  # fmt: skip
    return root


def _sub(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, count)

    return edit


def _drop_block(start: str) -> Callable[[str], str]:
    """Remove the `{ ... }` list item that contains ``start``."""

    def edit(text: str) -> str:
        i = text.index(start)
        a = text.rindex("{", 0, i)
        depth, j = 0, a
        while True:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        return re.sub(r",\s*\]", "\n  ]", text[:a].rstrip().rstrip(",") + text[j:])

    return edit


# (repository, corruption, fragment the error must contain: the field named)
CORRUPTIONS = [
    ("ort", _sub("max_batch_size", "max_bach_size"), "max_bach_size"),
    ("ort", _sub("TYPE_FP32", "TYPE_FP33"), "TYPE_FP33"),
    ("ort", _sub("oldest {", "direct { }\n  oldest {"), "oneof"),
    ("ort", _sub('name: "m"', 'name: "other"'), "name"),
    ("ort", _sub("dims: [ -1, 3 ]", "dims: [ -1, 4 ]"), "input[0].dims"),
    # the state travels per layer: h.l0, h.l1, c.l0, c.l1, each [1, 8] in Triton's dims
    ("ort", _sub("dims: [ 1, 8 ]", "dims: [ 1, 9 ]"), "sequence_batching.state[0]"),
    (
        "ort",
        _sub('input_name: "state_in.m.rnn.c.l0"', 'input_name: "state_in.m.rnn.h.l0"'),
        "sequence_batching.state[2].input_name",
    ),
    (
        "ort",
        _sub('output_name: "state_out.m.rnn.h.l0"', 'output_name: "state_out.m.rnn.hx"'),
        "sequence_batching.state[0].output_name",
    ),
    (
        "ort",
        _sub("TYPE_FP32\n      dims: [ 1, 8 ]", "TYPE_FP16\n      dims: [ 1, 8 ]"),
        "sequence_batching.state[0].data_type",
    ),
    ("ort", _drop_block('name: "START"'), "START"),
    ("ort", _drop_block('input_name: "state_in.m.rnn.c.l0"'), "state_in.m.rnn.c.l0"),
    ("ort", _sub("zero_data: true", 'data_file: "missing.bin"'), "initial_state.data_file"),
    ("direct", _drop_block('name: "READY"'), "READY"),
    ("py", _drop_block('name: "END"'), "END"),
    ("py", _sub("dims: [ -1, 2 ]", "dims: [ -1, 3 ]"), "output[0].dims"),
    (
        "py",
        _sub(
            "sequence_batching {",
            "sequence_batching {\n  state [ { input_name: "
            '"a" output_name: "b" data_type: TYPE_FP32 dims: [ 1 ] } ]',
        ),
        "sequence_batching.state",
    ),
]


@pytest.mark.parametrize("repo,edit,fragment", CORRUPTIONS, ids=[c[2] for c in CORRUPTIONS])
def test_corrupted_config_is_refused_with_the_field_named(
    repos: Path, repo: str, edit: Callable[[str], str], fragment: str, tmp_path: Path
) -> None:
    copy = tmp_path / repo
    shutil.copytree(repos / repo, copy)
    cfg = copy / "m" / "config.pbtxt"
    cfg.write_text(edit(cfg.read_text()))
    with pytest.raises(RepositoryError) as info:
        check_repository(copy)
    message = str(info.value)
    assert fragment in message, message
    assert "config.pbtxt" in message and "expected" in message


def test_a_graph_that_ignores_start_is_caught(repos: Path, tmp_path: Path) -> None:
    """The schema cannot see it: START wired to nothing leaves Triton's first-request state
    (uninitialised memory) in the sequence. --check drives the graph to find out."""
    copy = tmp_path / "ort"
    shutil.copytree(repos / "ort", copy)
    path = copy / "m" / "1" / "model.onnx"
    proto = onnx.load(str(path))
    never = onnx.numpy_helper.from_array(np.zeros((1, 1), np.int32), "never_start")
    proto.graph.initializer.append(never)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name == "START":
                node.input[i] = "never_start"
    onnx.save(proto, str(path))
    with pytest.raises(RepositoryError, match="START to reset the state"):
        check_repository(copy)


def test_the_clean_repositories_pass(repos: Path) -> None:
    for name in ("ort", "direct", "py"):
        (check,) = check_repository(repos / name)
        assert check.ok and check.name == "m"


def test_cli_writes_then_checks(tmp_path: Path) -> None:
    from _models import zoo

    runner = CliRunner()
    repo = tmp_path / "repo"
    r = runner.invoke(main, ["triton", str(zoo.get("gru")), "-o", str(repo), "--name", "gru",
                             "--strategy", "direct", "--max-batch", "4"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "gru/config.pbtxt" in r.output and "validated" in r.output
    r = runner.invoke(main, ["triton", str(zoo.get("gru")), "-o", str(repo), "--name", "gru_py",
                             "--backend", "python"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (repo / "gru_py" / "1" / "model.py").is_file()
    r = runner.invoke(main, ["triton", "--check", str(repo)])
    assert r.exit_code == 0, r.output
    assert re.search(r"gru\s+onnxruntime.*direct.*ok", r.output), r.output
    assert re.search(r"gru_py\s+python.*oldest.*ok", r.output), r.output
    cfg = repo / "gru" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("max_batch_size: 4", "max_batch_size: four"))
    r = runner.invoke(main, ["triton", "--check", str(repo)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "max_batch_size" in r.output


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--strategy", "newest"], "newest"),
        (["--max-batch", "0"], "max-batch"),
        (["--constant", "sr"], "NAME=VALUE"),
        (["--backend", "tensorrt"], "tensorrt"),
    ],
)
def test_cli_refuses_bad_options(tmp_path: Path, args: list[str], fragment: str) -> None:
    from _models import zoo

    r = CliRunner().invoke(main, ["triton", str(zoo.get("lstm")), "-o", str(tmp_path), *args])
    assert r.exit_code == 2 and fragment in r.output, r.output


def test_cli_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["triton", str(tmp_path / "nope.onnx"), "-o", str(tmp_path)])
    assert r.exit_code == 1 and "nope.onnx" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(main, ["triton", "--check", str(tmp_path)])
    assert r.exit_code == 1 and "config.pbtxt" in r.output
