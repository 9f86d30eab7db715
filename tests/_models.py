"""Tiny models for the runtime tests, exported once per test process (hidden size 8).

``zoo.get(name)`` returns the path of an exported model, exporting it on first use into
one temporary folder. Torch is imported here only, never by the runtime under test.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["VAD_CONTEXT", "VOCAB_TEXT", "zoo"]

VAD_CONTEXT = 4  # the VAD's conv kernel is 5: 4 samples of left context continue it exactly
VOCAB_TEXT = "the quick brown fox jumps over the lazy dog"


def _seq(cell: str, **kw: object) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        import torch

        from edgeseq.exporters.seq import export_model
        from edgeseq.train.models import SeqConfig, SeqModel

        torch.manual_seed(0)
        cfg = {"input_size": 3, "hidden_size": 8, "layers": 2, "output_size": 2, **kw}
        export_model(SeqModel(SeqConfig(cell=cell, **cfg)), path)  # type: ignore[arg-type]

    return build


def _unrolled(path: Path) -> None:
    """Basic ops, a fixed chunk of 4 frames, padding masked through the lengths input."""
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(6)
    cfg = SeqConfig(cell="lstm", input_size=3, hidden_size=8, output_size=2)
    export_model(SeqModel(cfg), path, mode="unrolled", chunk=4)


def _scaled(path: Path) -> None:
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(1)
    prep = Preprocessing(mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 4.0], out_mean=[5.0], out_std=[3.0])
    model = SeqModel(SeqConfig(cell="lstm", input_size=3, hidden_size=8, output_size=1))
    export_model(model, path, preprocessing=prep)


def _char_lm(path: Path) -> None:
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.data import Vocabulary
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(2)
    vocab = Vocabulary.from_text(VOCAB_TEXT)
    cfg = SeqConfig(
        cell="gru", input_size=8, hidden_size=8, output_size=len(vocab), vocab_size=len(vocab),
        task="generate",
    )  # fmt: skip
    export_model(SeqModel(cfg), path, preprocessing=Preprocessing(vocab=vocab.to_list()))


def _vad(name_output_dims: bool) -> Callable[[Path], None]:
    """A Silero-VAD-like model: raw samples (batch, time) + state (2, batch, 16) + sr scalar
    -> probability (batch, 1) + new state, exported with plain torch.onnx, no contract."""

    def build(path: Path) -> None:
        import torch
        from torch import nn

        class TinyVAD(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv1d(1, 4, kernel_size=VAD_CONTEXT + 1)  # no padding
                self.lstm = nn.LSTM(4, 16, batch_first=True)
                self.head = nn.Linear(16, 1)

            def forward(
                self, input: torch.Tensor, state: torch.Tensor, sr: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
                f = torch.tanh(self.conv(input.unsqueeze(1))).transpose(1, 2)  # (B, T-4, 4)
                y, (h, c) = self.lstm(f, (state[0:1], state[1:2]))
                scale = sr.to(torch.float32) / 16000.0
                prob = torch.sigmoid(self.head(y[:, -1]) * scale)  # (B, 1)
                return prob, torch.cat([h, c], 0)

        torch.manual_seed(3)
        args = (torch.randn(2, 40), torch.zeros(2, 2, 16), torch.tensor(16000))
        dyn = {"input": {0: "batch", 1: "time"}, "state": {1: "batch"}}
        if name_output_dims:
            dyn |= {"output": {0: "batch"}, "stateN": {1: "batch"}}
        torch.onnx.export(
            TinyVAD().eval(), args, str(path), input_names=["input", "state", "sr"],
            output_names=["output", "stateN"], dynamic_axes=dyn, dynamo=False, opset_version=17,
        )  # fmt: skip

    return build


def _linear(path: Path) -> None:
    """A stateless graph without a contract: nothing to stream."""
    import torch

    torch.manual_seed(4)
    torch.onnx.export(
        torch.nn.Linear(3, 2).eval(), (torch.randn(2, 5, 3),), str(path), input_names=["x"],
        output_names=["y"], dynamic_axes={"x": {0: "b", 1: "t"}}, dynamo=False,
    )  # fmt: skip


def _seq2seq(path: Path) -> None:
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.data import Vocabulary
    from edgeseq.train.models import Seq2Seq, SeqConfig

    torch.manual_seed(5)
    vocab = Vocabulary.from_text(VOCAB_TEXT)
    n = len(vocab)
    enc = SeqConfig(cell="gru", input_size=8, hidden_size=8, output_size=n, vocab_size=n)
    dec = SeqConfig(cell="gru", input_size=8, hidden_size=8, output_size=n, vocab_size=n)
    prep = Preprocessing(vocab=vocab.to_list())
    export_model(Seq2Seq(enc, dec), path, preprocessing=prep, source_preprocessing=prep)


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "lstm": _seq("lstm"),
    "gru": _seq("gru"),
    "rnn": _seq("rnn"),
    "scaled": _scaled,
    "unrolled": _unrolled,
    "char_lm": _char_lm,
    "vad": _vad(True),
    "vad_plain": _vad(False),
    "linear": _linear,
    "seq2seq": _seq2seq,
}


class _Zoo:
    def __init__(self) -> None:
        self._dir: Path | None = None
        self._paths: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self._paths:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="edgeseq-zoo-"))
                atexit.register(shutil.rmtree, self._dir, True)
            path = self._dir / f"{name}.onnx"
            with warnings.catch_warnings():  # torch.onnx's export chatter
                warnings.simplefilter("ignore")
                _BUILDERS[name](path)
            self._paths[name] = path
        return self._paths[name]


zoo = _Zoo()
