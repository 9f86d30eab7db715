"""Checkpoints under attack (issue 10 §2, §4): absurd configs are refused before anything is
allocated, pickled code is named whatever torch's message says, and a save killed midway
leaves a temp file that the next save removes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeseq.errors import ModelLoadError
from edgeseq.train.checkpoint import load_checkpoint, save_checkpoint
from edgeseq.train.models import Seq2Seq, SeqConfig, SeqModel


def _tampered(tmp_path: Path, change) -> Path:
    path = save_checkpoint(tmp_path / "ok.pt", SeqModel(SeqConfig(hidden_size=4)))
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


@pytest.mark.parametrize("hidden", [10**9, 1e9])
def test_an_absurd_config_is_refused_before_allocating(tmp_path: Path, hidden) -> None:
    """hidden_size=10**9 used to start a 48 GB allocation."""

    def grow(payload: dict) -> None:
        config = json.loads(payload["config"])
        config["hidden_size"] = hidden
        payload["config"] = json.dumps(config)

    path = _tampered(tmp_path, grow)
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match="config") as info:
        load_checkpoint(path)
    assert time.monotonic() - t0 < 10
    assert "re-save" in str(info.value)


def test_a_seq2seq_config_that_does_not_fit_its_weights(tmp_path: Path) -> None:
    enc = SeqConfig(cell="gru", input_size=3, hidden_size=4, output_size=2)
    path = save_checkpoint(tmp_path / "s.pt", Seq2Seq(enc, enc))
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    config["encoder"]["hidden_size"] = config["decoder"]["hidden_size"] = 10**8
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_checkpoint(tmp_path / "bad.pt")


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _Slice:
    def __reduce__(self):
        return (slice, (1, 2))


@pytest.mark.parametrize(("obj", "name"), [(_System(), "system"), (_Slice(), "slice")])
def test_pickled_code_is_named_whatever_torch_says(tmp_path: Path, obj, name: str) -> None:
    """torch 2.13 words the refusal of a blocked module (posix.system) differently from
    that of an unlisted global; both are recognised from the pickle itself."""
    path = _tampered(tmp_path, lambda payload: payload.update(extra=obj))
    with pytest.raises(ModelLoadError, match="pickled code") as info:
        load_checkpoint(path)
    assert name in str(info.value)


@pytest.mark.filterwarnings("error")  # nor a torch warning before the error
@pytest.mark.parametrize("lead", [b"", b"c", b"i", b"\x80\x02c", b"PK\x03\x04"])
def test_noise_is_not_a_checkpoint_whatever_it_looks_like(tmp_path: Path, lead: bytes) -> None:
    """Random bytes raised a raw IndexError from torch's unpickler; noise that starts like
    a GLOBAL opcode ('c', 'i') with a newline or two was reported as pickled code named
    '.' or ' ..JT'. Seeded noise, so the test is the same on every run."""
    rng = random.Random(len(lead))
    for _ in range(60):
        body = bytearray(rng.randbytes(256))
        for k in rng.sample(range(32), 2):
            body[k] = 10  # newlines early: a GLOBAL opcode reads "module\nname\n"
        path = tmp_path / "noise.pt"
        path.write_bytes(lead + bytes(body))
        with pytest.raises(ModelLoadError, match="not an edgeseq checkpoint"):
            load_checkpoint(path)


def test_a_killed_save_leaves_a_temp_file_the_next_save_removes(tmp_path: Path) -> None:
    target = tmp_path / "m.pt"
    code = (  # killed with -9 after writing the temp file, before the rename
        "import os, time\n"
        "from edgeseq.train.checkpoint import save_checkpoint\n"
        "from edgeseq.train.models import SeqConfig, SeqModel\n"
        "os.fsync = lambda fd: (print('writing', flush=True), time.sleep(60))\n"
        f"save_checkpoint({str(target)!r}, SeqModel(SeqConfig(hidden_size=4)))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and not target.exists()
    save_checkpoint(target, SeqModel(SeqConfig(hidden_size=4)))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    load_checkpoint(target)
