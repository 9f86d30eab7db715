"""Named state pairs never leave state fed as a constant.

Naming only some pairs (``state={...}``, CLI ``--state IN:OUT``) used to set the file's
contract aside and feed every unnamed input as a constant: an LSTM's ``c`` then restarted
from the same value on every call. Now pairs that agree with the file's contract select
it whole, overriding pairs are completed from it, and an input that is state by the
contract or by the probe (an unpaired output of its shape that does not grow with the
frame count) is refused, naming the pair to add.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from _cli import edgeseq, one_error_line
from _models import VAD_CONTEXT, zoo

from edgeseq.errors import ContractError
from edgeseq.runtime import StreamingPredictor
from edgeseq.runtime.discover import read_contract

H0, H1 = "state_in.m.rnn.h.l0", "state_in.m.rnn.h.l1"
C0, C1 = "state_in.m.rnn.c.l0", "state_in.m.rnn.c.l1"
XS = np.random.default_rng(3).standard_normal((12, 3)).astype(np.float32)


def _out(name: str) -> str:
    return name.replace("state_in", "state_out")


@functools.cache
def external_lstm() -> Path:
    """An LSTM exported with plain torch.onnx, no contract: x, h0, c0 -> y, hn, cn."""
    import tempfile

    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.head = nn.LSTM(3, 8, batch_first=True), nn.Linear(8, 2)

        def forward(self, x, h0, c0):  # type: ignore[no-untyped-def]
            y, (h, c) = self.lstm(x, (h0, c0))
            return self.head(y), h, c

    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp(prefix="edgeseq-ext-")) / "ext_lstm.onnx"
    b = {1: "batch"}
    axes = {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}}
    axes |= {"h0": b, "c0": b, "hn": b, "cn": b}
    args = (torch.randn(2, 5, 3), torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Model().eval(), args, str(path), input_names=["x", "h0", "c0"],
            output_names=["y", "hn", "cn"], dynamic_axes=axes, dynamo=False, opset_version=17,
        )  # fmt: skip
    return path


def _stream(p: StreamingPredictor) -> np.ndarray:
    return np.concatenate([p.step(XS[i : i + 3]) for i in range(0, len(XS), 3)])


def test_pairs_that_agree_with_the_contract_select_it_whole() -> None:
    path = zoo.get("lstm")
    whole = StreamingPredictor(path)
    part = StreamingPredictor(path, state={H0: _out(H0)})
    assert part.contract == whole.contract  # facts, every pair, preprocessing: the file's
    np.testing.assert_array_equal(_stream(part), _stream(whole))


def test_overriding_pairs_are_completed_from_the_contract() -> None:
    """Swapping the two layers' h pairs (same shapes) is the caller's call; the c pairs the
    caller did not name still come from the file's contract, never as constants."""
    path = zoo.get("lstm")
    swapped = {H0: _out(H1), H1: _out(H0)}
    contract, found = read_contract(path, state=swapped)
    pairs = {p.input: p.output for p in contract.states}
    assert pairs == {**swapped, C0: _out(C0), C1: _out(C1)}
    assert contract.constants == []
    assert found is not None and any("completed from the file's contract" in n for n in found.notes)


@pytest.mark.parametrize(
    ("state", "constants", "named"),
    [
        ({H0: _out(C0)}, (), C0),  # takes c.l0's output: c.l0 is left without one
        ({H0: _out(H0)}, (C1,), C1),  # the contract's state named as a constant
    ],
)
def test_state_of_the_contract_is_never_a_constant(state, constants, named: str) -> None:
    with pytest.raises(ContractError, match=named.replace(".", r"\.")):
        read_contract(zoo.get("lstm"), state=state, constants=constants)


def test_partial_pairs_without_a_contract_name_the_unpaired_state() -> None:
    path = external_lstm()
    with pytest.raises(ContractError, match=r"unpaired: 'c0' .*output 'cn'.*'c0':'cn'"):
        StreamingPredictor(path, state={"h0": "hn"})
    named = StreamingPredictor(path, state={"h0": "hn", "c0": "cn"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DiscoveryWarning
        found = StreamingPredictor(path)
    np.testing.assert_array_equal(_stream(named), _stream(found))


def test_a_constant_without_a_state_output_is_still_a_constant() -> None:
    """The control: the VAD's ``sr`` has no output of its shape, so naming only the state
    pair leaves it a constant, as before."""
    kw = {"constants": {"sr": np.array(16000)}, "context": VAD_CONTEXT}
    p = StreamingPredictor(zoo.get("vad"), state={"state": "stateN"}, **kw)
    assert p.contract.constants == ["sr"]


def test_cli_partial_state_is_one_line_naming_the_pair_to_add(tmp_path: Path) -> None:
    csv = tmp_path / "f.csv"
    csv.write_text("1,2,3\n4,5,6\n")
    for cmd in (["stream", external_lstm(), "-i", csv], ["inspect", external_lstm()]):
        line = one_error_line(edgeseq(*cmd, "--state", "h0:hn"))
        assert "'c0'" in line and "--state h0:hn --state c0:cn" in line, line
    done = edgeseq("stream", zoo.get("lstm"), "-i", csv, "--state", f"{H0}:{_out(H0)}")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2, done.stderr
