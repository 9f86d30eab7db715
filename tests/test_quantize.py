"""int8 / fp16 copies: load and stream in StreamingPredictor, keep the contract and lengths."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from test_export_support import Net, UserNet

from edgeseq.cli import main
from edgeseq.errors import ExportError
from edgeseq.exporters import QuantReport, export, quantize, verify
from edgeseq.exporters._streams import batched_stream
from edgeseq.runtime import StreamingPredictor
from edgeseq.runtime._session import open_session

X = torch.randn(2, 6, 3)
TOL = {"int8": 0.05, "fp16": 5e-3}  # max abs vs fp32 on outputs of size ~0.5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """fp32 files: LSTM native (DynamicQuantizeLSTM) with lengths, GRU native, LSTM unrolled."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("q")
    made = {}
    for name, model, mode in [
        ("lstm", UserNet(hidden=16), "native"),
        ("gru", Net("gru", layers=2), "native"),
        ("unrolled", Net("lstm", layers=2), "unrolled"),
    ]:
        path = root / f"{name}.onnx"
        chunk = 4 if mode == "unrolled" else None
        export(model, path, example=X, mode=mode, chunk=chunk, lengths=name == "lstm" or None)
        made[name] = (model.eval(), path)
    return made


def _frames(n: int = 23, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3)).astype(np.float32)


@pytest.mark.parametrize("kind", ["int8", "fp16"])
@pytest.mark.parametrize("name", ["lstm", "gru", "unrolled"])
def test_quantized_model_streams_with_parity(models, name, kind, tmp_path) -> None:
    model, src = models[name]
    dst = tmp_path / f"{name}.{kind}.onnx"
    report = quantize(src, dst, kind)
    assert isinstance(report, QuantReport) and [r.kind for r in report.rows] == ["fp32", kind]
    q = report.quantized
    assert q.size_bytes == dst.stat().st_size and q.us_per_frame > 0
    assert q.max_abs < TOL[kind] and "size x" in report.table()

    fp32, quant = StreamingPredictor(src), StreamingPredictor(dst)
    info = quant.contract.model.extra["quantization"]
    assert info["kind"] == kind and info["source"] == src.name
    assert quant.contract.states == fp32.contract.states  # the contract travelled
    assert quant.contract.lengths == fp32.contract.lengths
    x = _frames()
    want = fp32.step(x)
    for k in (1, 3, 7):  # chunked streaming of the quantized model matches its whole run
        quant.reset()
        got = np.concatenate([quant.step(x[i : i + k]) for i in range(0, len(x), k)])
        np.testing.assert_allclose(got, want, atol=TOL[kind], rtol=0)
    # op check accepts DynamicQuantizeLSTM; an LSTM's cell state is not bounded like its
    # output, so int8 drift there is judged relative to its scale (10 % of the largest value;
    # measured 0.055 abs on a c state near 1 on a CPU without VNNI)
    rtol = 0.1 if kind == "int8" else None
    report = verify(model, dst)
    assert report.ok(atol=TOL[kind], rtol=rtol), report.failures(TOL[kind], rtol)


@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_lengths_still_work(models, kind, tmp_path) -> None:
    """Rows of different lengths in one batch equal each row run alone (state and output).

    int8 only within quantization noise: dynamic quantization picks one activation scale
    per tensor, over the whole batch, so a row's result moves slightly with its batchmates
    (measured up to 6e-3 on outputs of size ~0.5 on a CPU without VNNI, 4e-3 with it).
    """
    atol = {"int8": 1.5e-2, "fp16": 1e-5}[kind]
    _, src = models["lstm"]
    dst = tmp_path / f"len.{kind}.onnx"
    quantize(src, dst, kind)
    if kind == "int8":
        nodes = [n for n in onnx.load(str(dst)).graph.node if n.op_type == "DynamicQuantizeLSTM"]
        assert nodes and all(n.input[4] == "lengths" for n in nodes)  # sequence_lens kept
    contract = StreamingPredictor(dst).contract
    session = open_session(dst)
    x = np.stack([_frames(11, s) for s in range(3)])
    lengths = np.array([11, 6, 2], np.int32)
    outs, states = batched_stream(session, contract, x, lengths, 3)
    for r, n in enumerate(lengths):
        alone, alone_states = batched_stream(
            session, contract, x[r : r + 1, :n], lengths[r : r + 1], 3
        )
        np.testing.assert_allclose(outs["y"][r, :n], alone["y"][0], atol=atol)
        for name, s in states.items():
            np.testing.assert_allclose(s[:, r], alone_states[name][:, 0], atol=atol)


def test_int8_quantizes_lstm_and_matmul(models, tmp_path) -> None:
    _, src = models["lstm"]
    quantize(src, tmp_path / "q.onnx", "int8")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert {"MatMulInteger", "DynamicQuantizeMatMul"} & ops


def test_task_metric_with_targets(models, tmp_path) -> None:
    _, src = models["gru"]
    held = np.stack([_frames(20, s) for s in range(2)])
    targets = np.zeros((2, 20, 2), np.float32)
    report = quantize(src, tmp_path / "t.onnx", "fp16", held_out=held, targets=targets)
    assert report.metric == "MSE vs targets"
    f, q = report.rows
    assert f.task_metric is not None and abs(f.task_metric - q.task_metric) < 1e-3
    assert "2 sequence(s) x 20 frames" in report.data


def test_bad_requests(models, tmp_path) -> None:
    _, src = models["gru"]
    with pytest.raises(ExportError, match="kind must be one of"):
        quantize(src, tmp_path / "a.onnx", "int4")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="dst must differ from src"):
        quantize(src, src, "int8")
    quantize(src, tmp_path / "once.onnx", "fp16")
    with pytest.raises(ExportError, match="already quantized"):
        quantize(tmp_path / "once.onnx", tmp_path / "twice.onnx", "int8")
    with pytest.raises(ExportError, match="held-out data must be"):
        quantize(src, tmp_path / "b.onnx", "fp16", held_out=np.zeros((4, 5)))


def test_cli_quantize(models, tmp_path) -> None:
    _, src = models["lstm"]
    held = tmp_path / "held.npy"
    np.save(held, _frames(30))
    run = CliRunner().invoke
    res = run(
        main, ["quantize", str(src), "-o", str(tmp_path / "c.onnx"), "--int8", "--data", str(held)]
    )
    assert res.exit_code == 0, res.output
    assert "int8" in res.output and "µs/frame" in res.output and "1 sequence(s)" in res.output
    res = run(main, ["quantize", str(src), "-o", str(tmp_path / "d.onnx")])
    assert res.exit_code != 0 and "--int8 or --fp16" in res.output
