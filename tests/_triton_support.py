"""Shared by the Triton tests: tiny models per cell × topology, references, a drive plan.

``model(cell, topology)`` exports once per process; ``Reference`` streams one sequence
locally as edgeseq's runtime would (StreamingPredictor, primed by the init model for
conditioned decoders); ``PLAN`` is a request schedule with staggered starts, ends and a
correlation id reused after its END.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgeseq.runtime import StreamingPredictor

__all__ = [
    "PLAN",
    "Reference",
    "frames_for",
    "init_source",
    "model",
    "seeds_from_init",
    "third_party_model",
    "user_init_model",
    "vad_with_context",
]

VOCAB = 7
_DIR: Path | None = None
_CACHE: dict[tuple, Path] = {}

# rounds of (sequence id, frames, START, END); a round's requests with equal frame counts
# share one model call, as Triton batches only equal shapes. Id 3 ends, then restarts.
PLAN = [
    [(1, 1, True, False), (2, 1, True, False), (3, 3, True, False)],
    [(1, 3, False, False), (2, 3, False, False), (3, 3, False, True)],
    [(1, 1, False, False), (3, 1, True, False), (4, 1, True, False), (5, 2, True, False)],
    [(2, 2, False, True), (1, 2, False, False), (4, 2, False, False), (3, 2, False, False)],
    [(1, 1, False, True), (3, 1, False, True), (4, 1, False, True), (5, 1, False, True)],
]


def _dir() -> Path:
    global _DIR
    if _DIR is None:
        _DIR = Path(tempfile.mkdtemp(prefix="edgeseq-triton-models-"))
        atexit.register(shutil.rmtree, _DIR, True)
    return _DIR


def model(cell: str, topology: str, mode: str = "native") -> Path:
    """A tiny exported SeqModel (or Seq2Seq) of ``cell`` and ``topology``."""
    key = (cell, topology, mode)
    if key in _CACHE:
        return _CACHE[key]
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import Seq2Seq, SeqConfig, SeqModel

    torch.manual_seed(len(_CACHE))
    path = _dir() / f"{cell}-{topology}-{mode}.onnx"
    kw = {"mode": mode, "chunk": 4 if mode == "unrolled" else None}
    base = {"cell": cell, "hidden_size": 6, "layers": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if topology == "seq2seq":
            cfg = {**base, "input_size": 4, "output_size": VOCAB, "vocab_size": VOCAB}
            vocab = Preprocessing(vocab=[f"t{i}" for i in range(VOCAB)])
            net = Seq2Seq(SeqConfig(**cfg), SeqConfig(**cfg))
            export_model(net, path, preprocessing=vocab, source_preprocessing=vocab, **kw)
        elif topology == "one_to_many":
            cfg = SeqConfig(**base, input_size=4, output_size=VOCAB, vocab_size=VOCAB,
                            condition_size=5, topology=topology)  # fmt: skip
            export_model(SeqModel(cfg), path, **kw)
        else:
            cfg = SeqConfig(**base, input_size=3, output_size=2, topology=topology)
            export_model(SeqModel(cfg), path, **kw)
    _CACHE[key] = path
    return path


def user_init_model() -> Path:
    """A user's module with a learned (non-zero) initial state, exported by dynamo."""
    key = ("user_init",)
    if key not in _CACHE:
        import torch
        from test_export_support import Net

        from edgeseq.exporters import export

        torch.manual_seed(0)
        path = _dir() / "user_init.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export(Net("lstm", layers=2, init=True).eval(), path, example=torch.randn(2, 5, 3),
                   backend="dynamo")  # fmt: skip
        _CACHE[key] = path
    return _CACHE[key]


def third_party_model() -> Path:
    """A stateful model exported with plain torch.onnx (no contract): a GRU whose state is
    ``h`` -> ``h_out`` and an int64 ``scale`` input the caller must give on every call."""
    key = ("third_party",)
    if key not in _CACHE:
        import torch
        from torch import nn

        class Scaled(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.gru = nn.GRU(3, 8, batch_first=True)
                self.head = nn.Linear(8, 2)

            def forward(self, x, h, scale):  # (B, T, 3), (1, B, 8), () int64
                y, h = self.gru(x, h)
                return self.head(y) * scale.to(torch.float32), h

        torch.manual_seed(7)
        path = _dir() / "third_party.onnx"
        args = (torch.randn(2, 5, 3), torch.zeros(1, 2, 8), torch.tensor(3))
        dyn = {"x": {0: "b", 1: "t"}, "h": {1: "b"}, "y": {0: "b", 1: "t"}, "h_out": {1: "b"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Scaled().eval(), args, str(path), input_names=["x", "h", "scale"],
                              output_names=["y", "h_out"], dynamic_axes=dyn, dynamo=False,
                              opset_version=17)  # fmt: skip
        _CACHE[key] = path
    return _CACHE[key]


def vad_with_context(vad: Path, context: int) -> Path:
    """The zoo's VAD-like model with its pairs and left context stored in its contract (what
    ``edgeseq inspect --write-contract`` does), so every server streams it the same way."""
    key = ("vad_context", str(vad), context)
    if key not in _CACHE:
        import dataclasses

        import onnx

        from edgeseq.contract import METADATA_KEY

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the pairs are discovered, then stored
            p = StreamingPredictor(vad, constants={"sr": np.array(16000)}, context=context)
        facts = dataclasses.replace(p.contract.model, extra={"context": context})
        contract = dataclasses.replace(p.contract, model=facts)
        proto = onnx.load(str(vad))
        onnx.helper.set_model_props(proto, {METADATA_KEY: contract.to_json()})
        path = _dir() / "vad_context.onnx"
        onnx.save(proto, str(path))
        _CACHE[key] = path
    return _CACHE[key]


def frames_for(contract, rng: np.random.Generator, t: int) -> np.ndarray:
    """``(1, t, ...)`` frames for the model's frames input: floats, or token ids."""
    f = contract.frames
    if f.dtype.startswith("int"):
        vocab = len(contract.preprocessing.vocab or []) or VOCAB
        return rng.integers(0, vocab, size=(1, t)).astype(f.dtype)
    trailing = [d if isinstance(d, int) else 1 for d in f.shape[2:]]
    return rng.normal(size=(1, t, *trailing)).astype(f.dtype)


def init_source(init_contract, rng: np.random.Generator) -> np.ndarray:
    """What a conditioned decoder's init model reads: a condition vector or source tokens."""
    spec = init_contract.inputs[0]
    if spec.dtype.startswith("int"):
        return rng.integers(0, VOCAB, size=(1, 5)).astype(spec.dtype)
    return rng.normal(size=(1, *[d for d in spec.shape[1:]])).astype(spec.dtype)


def seeds_from_init(init_dir: Path, source: np.ndarray) -> dict[str, np.ndarray]:
    """Run a repository's ``NAME_init`` model as Triton would (stateless, batch 1)."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(init_dir / "1" / "model.onnx"))
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, {s.get_inputs()[0].name: source})))


class Reference:
    """One sequence streamed locally by edgeseq's runtime: what Triton must reproduce."""

    def __init__(self, path: Path, **kw) -> None:
        self.path = path
        self.p = StreamingPredictor(path, **kw)
        extra = self.p.contract.model.extra
        self.init_path = path.with_name(extra["init_model"]) if "init_model" in extra else None

    def start(self, source: np.ndarray | None = None) -> None:
        self.p.reset()
        if self.init_path is None:
            return
        if self.p.contract.model.topology == "seq2seq":
            enc = StreamingPredictor(self.init_path)
            enc.step(source[0])
            self.p.set_state(enc.state)
        else:
            import onnxruntime as ort

            s = ort.InferenceSession(str(self.init_path))
            names = [o.name for o in s.get_outputs()]
            self.p.set_state(dict(zip(names, s.run(names, {"condition": source}))))

    def step(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` ``(1, T, ...)`` -> the first output ``(1, T, ...)``."""
        return self.p.step(frames[0])[None]
