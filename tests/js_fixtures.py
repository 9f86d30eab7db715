"""Fixtures for the JavaScript runtime's tests: models exported here, and what Python makes of them.

runtime-js's ``npm test`` runs this first, in the same test run, then checks the JavaScript
runtime against it (Node and headless Chromium)::

    python tests/js_fixtures.py write OUT_DIR        # models + manifest.json
    python tests/js_fixtures.py restore JOBS.json         # JS snapshots -> Python

``manifest.json`` holds, per model, the frames streamed and Python's
``StreamingPredictor`` outputs for chunkings {1, 3, 7}, snapshots taken in Python, the
lines ``edgeseq stream`` prints (tests/js_cli_fixtures.py), texts
``StreamingPredictor.generate`` samples, the ids
``EncoderDecoder`` greedy and beam decode (tests/js_seq2seq_fixtures.py), and
reference values for Python's float formatting and numpy's random generator.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CELLS = ("rnn", "lstm", "gru")
MODES = ("native", "unrolled")
CHUNKINGS = (1, 3, 7)
FRAMES = 23  # 23 = 3·7 + 2: every chunking ends in a short tail; unrolled pads to 4
FEATURES = 3
SNAP_AT = 10


def _flat(a: Any) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _stream(path: Path, x: np.ndarray, chunk: int, **kw: Any) -> tuple[list, list, dict]:
    """Python's outputs for ``x`` fed ``chunk`` frames per call (flat, with their dims, per
    call), and the final state."""
    from edgeseq.runtime import StreamingPredictor

    p = StreamingPredictor(path, **kw)
    ys = [np.asarray(p.step(x[i : i + chunk])) for i in range(0, len(x), chunk)]
    state = {k: _flat(v) for k, v in p.state.items()}
    return [_flat(y) for y in ys], [list(y.shape) for y in ys], state


def _parity_case(name: str, path: Path, x: np.ndarray, **kw: Any) -> dict[str, Any]:
    from edgeseq.runtime import StreamingPredictor

    outs, dims, state = {}, {}, {}
    for c in CHUNKINGS:
        outs[str(c)], dims[str(c)], state[str(c)] = _stream(path, x, c, **kw)
    p = StreamingPredictor(path, **kw)
    p.step(x[:SNAP_AT])
    snap = path.with_name(f"{name}.snap")
    p.snapshot().save(snap)
    after = p.step(x[SNAP_AT:])
    return {
        "name": name,
        "model": path.name,
        "frames": _flat(x),
        "frame_shape": list(x.shape[1:]),
        "dims": dims,
        "outputs": outs,
        "state": state,
        "hash": p.engine.hash,
        "snapshot": {"file": snap.name, "at": SNAP_AT, "after": _flat(after)},
        "constants": {k: np.asarray(v).item() for k, v in kw.get("constants", {}).items()},
    }


def _seq_model(cell: str, mode: str, path: Path, seed: int, **cfg: Any) -> None:
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(seed)
    base = {"input_size": FEATURES, "hidden_size": 8, "layers": 2, "output_size": 2}
    model = SeqModel(SeqConfig(cell=cell, **{**base, **cfg}))
    export_model(model, path, mode=mode, chunk=4 if mode == "unrolled" else None)


def _style_model(style: str, cell: str, config: str, path: Path) -> None:
    """A model of another stream style (conv caches, a cell loop), exported as users do."""
    import torch
    from style_models import build

    from edgeseq.exporters import export

    export(build(style, cell, config), path, example=torch.randn(2, 6, FEATURES))


def _scaled(path: Path) -> None:
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(11)
    prep = Preprocessing(
        mean=[1.0, 2.0, 3.0], std=[2.0, 0.5, 4.0], out_mean=[5.0, -1.0], out_std=[3.0, 0.25]
    )
    model = SeqModel(SeqConfig(cell="lstm", input_size=3, hidden_size=8, output_size=2))
    export_model(model, path, preprocessing=prep)


def _classifier(path: Path) -> None:
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(12)
    cfg = SeqConfig(
        cell="gru", input_size=3, hidden_size=8, output_size=3, topology="many_to_one",
        task="classify", extra={"labels": ["walk", "run", "sit"]},
    )  # fmt: skip
    prep = Preprocessing(mean=[0.5, 0.0, 1.0], std=[2.0, 1.0, 3.0])
    export_model(SeqModel(cfg), path, preprocessing=prep)


def _vad(path: Path, tmp: Path) -> None:
    """A model from elsewhere (raw samples, a constant sample rate, left context, an
    output without a time axis) with the contract `edgeseq inspect --write-contract` stores."""
    import dataclasses

    from _models import VAD_CONTEXT, zoo

    from edgeseq.cli._inspect import write_contract
    from edgeseq.runtime.discover import read_contract

    src = zoo.get("vad")
    contract, _ = read_contract(src, constants=["sr"])
    extra = {**contract.model.extra, "context": VAD_CONTEXT}
    contract = dataclasses.replace(contract, model=dataclasses.replace(contract.model, extra=extra))
    write_contract(str(src), str(path), contract)


def _char_model(path: Path, tmp: Path) -> None:
    """The pydoc character model: a short training run on CPython's docs, exported."""
    from edgeseq.exporters._load import export_source, load_source
    from edgeseq.train.tasks import TaskOptions, train_task

    ckpt = tmp / "chars.pt"
    opts = TaskOptions(
        task="generate", data="pydoc", hidden_size=32, epochs=1, max_steps=40, progress=False
    )
    train_task(opts, ckpt)
    export_source(load_source(str(ckpt)), path)


def _stored(src: Path, path: Path, *args: Any) -> None:
    """``edgeseq inspect SRC ARGS --write-contract PATH``, as a user stores a contract."""
    from click.testing import CliRunner

    from edgeseq.cli import main

    argv = ["inspect", str(src), *map(str, args), "--write-contract", str(path)]
    res = CliRunner().invoke(main, argv)
    if res.exit_code != 0:
        raise RuntimeError(f"edgeseq {' '.join(argv)} failed: {res.output}{res.exception!r}")


def _context_models(out: Path) -> None:
    """Models from elsewhere for the left-context and rate checks (test_context_refused.py,
    test_meaning_kept.py): a plain LSTM that streams exactly without context, the same with
    2 frames of context recorded, and the VAD with its rate (16000 Hz) recorded."""
    from _models import VAD_CONTEXT, zoo
    from test_state_pairs_complete import external_lstm

    ext = external_lstm()
    pairs = ("--state", "h0:hn", "--state", "c0:cn")
    _stored(ext, out / "external-lstm.onnx", *pairs)
    _stored(ext, out / "external-lstm-context.onnx", *pairs, "--context", 2)
    vad = ("--state", "state:stateN", "--constant", "sr=16000", "--context", VAD_CONTEXT)
    _stored(zoo.get("vad"), out / "vad-rate.onnx", *vad, "--rate", 16000)
    from test_context_refused import gain_model  # the probe starts from the initial state

    gain_model(out / "gain-zeros.onnx", None)
    gain_model(out / "gain-one.onnx", 1.0)


def _refusals(out: Path) -> dict[str, str]:
    """Python's own messages for what the JavaScript runtime must refuse in the same words."""
    from edgeseq.errors import InputError
    from edgeseq.runtime import StreamingPredictor

    cases = {
        "context_export": (out / "lstm-native.onnx", {"context": 3}),
        "context_exact": (out / "external-lstm.onnx", {"context": 2}),
        "rate": (out / "vad-rate.onnx", {"constants": {"sr": np.array(8000)}}),
        "context_gain_zeros": (out / "gain-zeros.onnx", {"context": 1}),
    }
    said = {}
    for name, (path, kw) in cases.items():
        try:
            StreamingPredictor(path, **kw)
        except InputError as exc:
            said[name] = str(exc)
        else:
            raise RuntimeError(f"Python's runtime accepted {path.name} with {kw}")
    return said


def _inexact(out: Path) -> list[dict[str, Any]]:
    """Python's refusals of integer frames a float32 input would round (edgeseq/exact.py):
    the JavaScript runtime refuses integer typed arrays in the same words."""
    from edgeseq.errors import InputError
    from edgeseq.runtime import StreamingPredictor

    big = 2**24 + 1
    cases = []
    for model, frames in (
        ("lstm-native.onnx", [[1, 2, 3], [4, big, 6]]),
        ("lstm-native.onnx", [7, 8, -big - 2]),
        ("scaled.onnx", [[1, 2, 3], [big + 2, 5, 6]]),
    ):
        try:
            StreamingPredictor(out / model).step(np.array(frames, np.int64))
        except InputError as exc:
            cases.append({"model": model, "frames": frames, "message": str(exc)})
        else:
            raise RuntimeError(f"Python's runtime accepted {frames} for {model}")
    return cases


TEXT_CASES = (
    {"prompt": "The ", "max_tokens": 40, "temperature": 0.0},
    {"prompt": "def ", "max_tokens": 60, "temperature": 0.8, "top_k": 10, "seed": 3},
    {"prompt": "", "max_tokens": 60, "temperature": 1.0, "top_p": 0.9, "seed": 11, "stop": ["\n"]},
    {"prompt": "import", "max_tokens": 50, "temperature": 1.3, "seed": 2**40 + 7},
)


def _text(path: Path) -> dict[str, Any]:
    from edgeseq.runtime import StreamingPredictor

    p = StreamingPredictor(path)
    cases = [{**case, "text": "".join(p.generate(**case))} for case in TEXT_CASES]
    return {"model": path.name, "cases": cases, "vocab": p.contract.preprocessing.vocab}


def _formatting() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    vals = [0.0078125, -0.0078125, 2.5e-7, 1e16, 1e-5, 0.1, -0.0, 1 / 3, 123456789012345678.0]
    vals += [float(np.float32(v)) for v in rng.normal(size=300) * 10.0 ** rng.integers(-9, 9, 300)]
    vals += [k / 128 for k in range(-300, 300, 7)]
    floats = [[repr(v), repr(v), repr(round(v, 6))] for v in vals]
    texts = ['{"b":1.0,"a":[1,2.50,1e-05,-0,1E400],"é":"\\u00e9\\n\\u2603","\\ud83d\\ude00":null}']
    dumps = [[t, json.dumps(json.loads(t), sort_keys=True, separators=(",", ":"))] for t in texts]
    seeds = [0, 7, 123456789, 2**40 + 5, 2**64 + 3]
    rand = {str(s): np.random.default_rng(s).random(5).tolist() for s in seeds}
    return {"floats": floats, "dumps": dumps, "random": rand}


def write(out: Path) -> dict[str, Any]:
    from edgeseq.exporters.ort import to_ort

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(FRAMES, FEATURES)).astype(np.float32)
    manifest: dict[str, Any] = {"parity": []}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, cell in enumerate(CELLS):
            for mode in MODES:
                name = f"{cell}-{mode}"
                _seq_model(cell, mode, out / f"{name}.onnx", seed=k)
                manifest["parity"].append(_parity_case(name, out / f"{name}.onnx", x))
        from edgeseq.exporters import quantize

        for src, kind in (("lstm-native", "int8"), ("gru-native", "fp16")):
            name = f"{src}-{kind}"
            quantize(out / f"{src}.onnx", out / f"{name}.onnx", kind, latency_frames=5)
            manifest["parity"].append({**_parity_case(name, out / f"{name}.onnx", x), "kind": kind})
        # the frames as a CSV, for pages that stream a file (exact: repr of float32 values)
        rows = (",".join(repr(float(v)) for v in r) for r in x)
        (out / "frames-all.csv").write_text("\n".join(rows) + "\n")
        _scaled(out / "scaled.onnx")
        _classifier(out / "classifier.onnx")
        manifest["parity"] += [
            _parity_case("scaled", out / "scaled.onnx", x * 3 + 1),
            _parity_case("classifier", out / "classifier.onnx", x),
        ]
        # conv caches (batch axis 0) and a one-step cell loop: state like any other
        for name, style, cell, config in (
            ("conv-cache", "conv_cache", "lstm", "pad_before"),
            ("cell-loop", "cell_loop", "gru", "loop"),
        ):
            _style_model(style, cell, config, out / f"{name}.onnx")
            manifest["parity"].append(_parity_case(name, out / f"{name}.onnx", x))
        from _models import VAD_CONTEXT

        _vad(out / "vad.onnx", Path(tmp))
        samples = rng.normal(size=40).astype(np.float32)
        vad = _parity_case("vad", out / "vad.onnx", samples, constants={"sr": np.int64(16000)})
        manifest["parity"].append({**vad, "context": VAD_CONTEXT})
        from _models import zoo

        (out / "no-contract.onnx").write_bytes(zoo.get("vad_plain").read_bytes())
        _context_models(out)
        manifest["refusals"] = _refusals(out)
        manifest["inexact"] = _inexact(out)
        arts = to_ort(out / "lstm-native.onnx", out / "ort")
        manifest["ort"] = {
            "model": f"ort/{arts.ort.name}",
            "contract": f"ort/{arts.contract_json.name}",
            "like": "lstm-native",
        }
        _char_model(out / "pydoc-chars.onnx", Path(tmp))
        manifest["text"] = _text(out / "pydoc-chars.onnx")
        from js_seq2seq_fixtures import condition_case, frame_case, ties
        from js_seq2seq_fixtures import write as write_seq2seq

        manifest["seq2seq"] = write_seq2seq(out)
        manifest["seq2seq_frames"] = frame_case(out)
        manifest["one_to_many"] = condition_case(out)
        manifest["beam_ties"] = ties()
    from js_cli_fixtures import stream_cli

    manifest["stream_cli"] = stream_cli(out, x)
    manifest["formatting"] = _formatting()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def restore(jobs: str) -> None:
    """Restore snapshots written by JavaScript and stream more frames in Python.

    ``jobs``: a JSON file ``[{"model", "snapshot", "frames", "frame_shape", "constants"}]``
    (paths absolute); prints ``[{"frames_seen", "outputs"}]`` as JSON.
    """
    from edgeseq.runtime import Snapshot, StreamingPredictor

    results = []
    for job in json.loads(Path(jobs).read_text()):
        p = StreamingPredictor(job["model"], constants=job.get("constants") or None)
        p.restore(Snapshot.load(job["snapshot"]))
        seen = p.frames_seen
        x = np.asarray(job["frames"], np.float32).reshape(-1, *job["frame_shape"])
        results.append({"frames_seen": seen, "outputs": _flat(p.step(x))})
    print(json.dumps(results))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or ["help"]
    if cmd == "write" and len(rest) == 1:
        m = write(Path(rest[0]))
        print(f"wrote {len(m['parity'])} parity models and the manifest to {rest[0]}")
    elif cmd == "restore" and len(rest) == 1:
        restore(rest[0])
    else:
        sys.exit(__doc__)
