"""What a new user meets at the CLI's edges, through the installed `edgeseq` command.

Every user error is one line naming the command's own flags, with a non-zero exit;
output locations are checked before training; help texts document the data formats;
labels in reports say what they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from _cli import edgeseq, offline_model, one_error_line, sensor

ROOT = Path(__file__).resolve().parents[1]


def test_train_creates_the_output_folder() -> None:
    s = sensor()  # trained with -o <tmp>/not/yet/there/s.pt
    assert s.checkpoint.is_file() and "wrote" in s.train_output


def test_train_refuses_an_unwritable_output_before_training(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = edgeseq(
        "train", "--task", "forecast", "--data", sensor().csv, "--epochs", "50",
        "-o", tmp_path / "file" / "x.pt",
    )  # fmt: skip
    line = one_error_line(done)
    assert "-o" in line and "file" in line
    assert "epoch" not in done.stderr and "features" not in done.stdout  # nothing was read


def test_bad_data_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    """A user with a wrong file learns it at once, not after torch's import."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom edgeseq.train.tasks import TaskOptions, train_task\n"
        "try:\n    train_task(TaskOptions('forecast', sys.argv[1]), sys.argv[2])\n"
        "except Exception as exc:\n    print(type(exc).__name__, 'torch' in sys.modules)\n"
    )
    text = _csv(tmp_path, "t.txt", "hello world, the quick brown fox.\n" * 5)
    done = subprocess.run([sys.executable, "-c", code, str(text), str(tmp_path / "x.pt")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.stdout.split() == ["InputError", "False"], done.stdout + done.stderr


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_train_messages_name_cli_flags(tmp_path: Path) -> None:
    tiny = "sequence,label,a,b\n" + "".join(
        f"{s},{'up' if s % 2 else 'down'},{t},{s}\n" for s in range(3) for t in range(4)
    )
    line = one_error_line(
        edgeseq("train", "--task", "classify", "--data", _csv(tmp_path, "c.csv", tiny),
                "-o", tmp_path / "c.pt")
    )  # fmt: skip
    assert "--val-fraction" in line and "val=" not in line and "val_fraction" not in line
    text = _csv(tmp_path, "t.txt", "hello world, the quick brown fox.\n" * 5)
    line = one_error_line(
        edgeseq("train", "--task", "forecast", "--data", text, "-o", tmp_path / "f.pt")
    )
    assert "no numeric column" in line and "--columns" in line and "[]" not in line
    line = one_error_line(
        edgeseq("train", "--task", "forecast", "--data", _csv(tmp_path, "one.csv", "a,b\n1,2\n"),
                "-o", tmp_path / "f.pt")
    )  # fmt: skip
    assert line.endswith("got 1 data row") and "1 rows" not in line
    twice = _csv(
        tmp_path, "twice.csv", "t,a,a\n" + "".join(f"{k},{k % 3},{k % 5}\n" for k in range(9))
    )
    line = one_error_line(
        edgeseq("train", "--task", "forecast", "--data", twice, "-o", tmp_path / "f.pt")
    )
    assert "the header has 'a' in columns 2, 3" in line, line  # recorded names must pick
    line = one_error_line(
        edgeseq("train", "--task", "forecast", "--data", "ibm", "--columns", "x", "-o", "f.pt")
    )
    assert "--columns" in line and "ibm" in line


def test_generate_on_a_float_model_speaks_cli() -> None:
    line = one_error_line(edgeseq("generate", sensor().model, "--prompt", "hi"))
    assert "not text" in line and "edgeseq stream" in line and "Preprocessing" not in line


def test_stream_refuses_a_token_model() -> None:
    from _models import zoo

    line = one_error_line(edgeseq("stream", zoo.get("char_lm"), input="1\n"))
    assert "token ids" in line and "edgeseq generate" in line


def _absurd_checkpoint(tmp_path: Path) -> Path:
    payload = torch.load(sensor().checkpoint, weights_only=True)
    cfg = json.loads(payload["config"])
    cfg["hidden_size"] = 100_000_000  # 4e8 x 1e8 floats if it were built
    payload["config"] = json.dumps(cfg)
    path = tmp_path / "absurd.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["stream", "{model}", "--threads", "0"], "--threads"),
        (["stream", "{model}", "--threads", "-3"], "--threads"),
        (["generate", "{model}", "--threads", "0"], "--threads"),
        (["stream", "{model}", "-i", "{tmp}/missing.csv"], "does not exist"),
        (["quantize", "{tmp}/missing.onnx", "-o", "{tmp}/q.onnx", "--int8"], "does not exist"),
        (["export", "{absurd}", "-o", "{tmp}/a.onnx"], "do not fit the stored"),
        (["stream", "{model}", "--on-error", "ignore"], "--on-error"),
        (["generate", "{lm}", "--seed", "-1"], "--seed"),
        (["verify", "{ckpt}", "{model}", "--atol", "nan"], "--atol"),
        (["export", "{ckpt}", "-o", "{tmp}/v.onnx", "--verify", "--atol", "-1"], "--atol"),
        (["train", "--task", "forecast", "--data", "ibm", "--clip", "-1", "-o", "x.pt"], "--clip"),
        (["train", "--task", "forecast"], "--data"),
        (["train", "--task", "generate", "--data", "{bad}", "-o", "{tmp}/g.pt"], "not UTF-8"),
        (["nosuchcommand"], "No such command"),
        (["verify", "{ckpt}", "{bad}"], "is not an ONNX model"),
        (["verify", "{ckpt}", "{tmp}/missing.onnx"], "does not exist"),
        (["verify", "{ckpt}", "{lm}"], "takes token ids (int64) per time step"),
        (["export", "{ckpt}", "-o", "{ckpt}"], "is CHECKPOINT itself"),
        (["quantize", "{model}", "-o", "{model}", "--int8"], "is MODEL itself"),
        (["train", "--task", "forecast", "--data", "{csv}", "-o", "{csv}"], "is --data itself"),
        (
            [
                "train",
                "--task",
                "forecast",
                "--data",
                "ibm",
                "--hidden",
                "100000000",
                "-o",
                "{tmp}/h.pt",
            ],
            "Lower --hidden",
        ),
    ],
)
def test_every_user_error_is_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    from _models import zoo

    (tmp_path / "bad.bin").write_bytes(b"\x00\xff not a model, not text \xfe")
    lazy = {
        "absurd": lambda: _absurd_checkpoint(tmp_path),
        "lm": lambda: zoo.get("char_lm"),
        "ckpt": lambda: sensor().checkpoint,
        "csv": lambda: sensor().csv,
        "model": lambda: sensor().model,
        "bad": lambda: tmp_path / "bad.bin",
        "tmp": lambda: tmp_path,
    }
    used = {k: f() for k, f in lazy.items() if any(f"{{{k}}}" in a for a in args)}
    filled = [a.format(**used) for a in args]
    kept = {p: p.read_bytes() for p in map(Path, filled) if p.is_file()}
    line = one_error_line(edgeseq(*filled, input=""))
    assert needle in line, line
    assert "--help" in line or "Usage" not in line
    assert {p: p.read_bytes() for p in kept} == kept  # no file given was changed


@pytest.mark.parametrize(
    ("args", "flag", "python"),
    [
        (["stream", "{model}", "--device", "nosuch"], "e.g. --device cpu", "device="),
        (["stream", "{model}", "--constant", "x=1"], "--constant 'x'", "np.array"),
        (["stream", "{model}", "--constant", "nosuch=1"], "--constant 'nosuch'", "constants["),
        (["stream", "{model}", "--state", "a:b"], "--state 'a'", "state["),
        (["stream", "{model}", "--window", "8"], "--window 8 with --context 0", "window="),
        (["generate", "{lm}", "--stop", ""], "Error: --stop must be", "Error: stop"),
        (["export", "--factory", "test_export_support:build_bidirectional", "-o", "{tmp}/b.onnx",
          "--example-shape", "2,8,3"], "Export with --offline (whole", "offline=True"),
    ],
)  # fmt: skip
def test_library_errors_speak_cli_flags(
    args: list[str], flag: str, python: str, tmp_path: Path
) -> None:
    """What the library says in Python keywords reaches a CLI user as the flag to use."""
    from _models import zoo

    lazy = {"model": lambda: sensor().model, "lm": lambda: zoo.get("char_lm")}
    used = {k: f() for k, f in lazy.items() if any(f"{{{k}}}" in a for a in args)}
    filled = [a.format(tmp=tmp_path, **used) for a in args]
    line = one_error_line(edgeseq(*filled, input="1,2,3\n", cwd=ROOT / "tests"))
    assert flag in line and python not in line, line


def test_help_documents_every_task_data_format() -> None:
    text = edgeseq("train", "--help").stdout
    fmt = text[text.index("Data formats") : text.index("Examples")]
    for task, needles in {
        "forecast": ["header line of names", "one row per time step"],
        "classify": ["'sequence' id column", "'label' column", "sequence,label,"],
        "generate": ["text file"],
    }.items():
        assert task in fmt and all(n in fmt for n in needles), (task, fmt)
    readme = (ROOT / "README.md").read_text()
    assert "sequence,label," in readme and "one row per time step" in readme


def test_top_level_help_uses_documented_data_names() -> None:
    top = edgeseq("--help").stdout
    train = " ".join(edgeseq("train", "--help").stdout.split())
    used = re.findall(r"--data (\S+)", top)
    assert used, top
    for name in used:
        assert f"{name} (" in train, f"`--data {name}` in `edgeseq --help` is not in train --help"


def test_verify_labels_final_states_and_offline_mode() -> None:
    s = sensor()
    done = edgeseq("verify", s.checkpoint, s.model)
    assert done.returncode == 0, done.stderr
    assert "state_out." in done.stdout and "state_in." not in done.stdout
    done = edgeseq("verify", "test_export_support:build_bidirectional", offline_model(),
                   cwd=ROOT / "tests")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(mode offline," in done.stdout and "mode native" not in done.stdout
    shown = edgeseq("inspect", offline_model()).stdout
    assert re.search(r"^export mode\s+offline \(native ops, whole sequences\)$", shown, re.M)


def test_inspect_says_when_state_sets_the_files_contract_aside() -> None:
    s = sensor()
    pair = "state_in.m.rnn.h:state_out.m.rnn.h"  # agrees with the contract: it is kept whole
    done = edgeseq("inspect", s.model, "--state", pair)
    assert done.returncode == 0, done.stderr
    assert "set aside" not in done.stdout and "constant  'state_in" not in done.stdout
    swap = ["state_in.m.rnn.h:state_out.m.rnn.c", "state_in.m.rnn.c:state_out.m.rnn.h"]
    done = edgeseq("inspect", s.model, "--state", swap[0], "--state", swap[1])
    assert done.returncode == 0, done.stderr
    assert "own edgeseq contract is set aside" in done.stdout, done.stdout
    assert "no edgeseq contract in this file" not in done.stdout
    assert "set aside" not in edgeseq("inspect", s.model).stdout
