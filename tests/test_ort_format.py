"""ORT format: onnxruntime's converter writes .ort + operator config; the contract travels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export_support import Net, stream

from edgeseq.errors import ExportError
from edgeseq.exporters import export, quantize, to_ort, verify
from edgeseq.exporters.ort import read_contract_json
from edgeseq.runtime import StreamingPredictor


@pytest.mark.parametrize("mode", ["native", "unrolled"])
def test_ort_file_streams_with_the_same_contract(mode, tmp_path) -> None:
    torch.manual_seed(0)
    model = Net("lstm", layers=2).eval()
    src = tmp_path / "m.onnx"
    contract = export(
        model, src, example=torch.randn(2, 6, 3), mode=mode, chunk=4 if mode == "unrolled" else None
    )
    art = to_ort(src, tmp_path / "device")
    assert art.ort == tmp_path / "device" / "m.ort" and art.ort.stat().st_size > 0
    config = art.operators_config.read_text()
    op_lines = [ln for ln in config.splitlines() if ln and not ln.startswith("#")]
    assert op_lines and all(ln.startswith(("ai.onnx;", "com.microsoft;")) for ln in op_lines)
    assert ("LSTM" in config) is (mode == "native")
    pred = StreamingPredictor(art.ort)  # metadata_props survive in the .ort file
    assert pred.contract.to_json() == contract.to_json()
    assert read_contract_json(art.contract_json) == contract
    x = np.random.default_rng(0).standard_normal((13, 3)).astype(np.float32)
    want = stream(StreamingPredictor(src), x, None)
    for k in (1, 5, None):
        np.testing.assert_allclose(stream(pred, x, k), want, atol=1e-5, rtol=0)
    report = verify(model, art.ort)
    assert report.ok(1e-5) and any(".ort" in n for n in report.notes)


def test_quantized_model_converts(tmp_path) -> None:
    src = tmp_path / "m.onnx"
    export(Net("lstm").eval(), src, example=torch.randn(2, 6, 3))
    quantize(src, tmp_path / "m.int8.onnx", "int8")
    art = to_ort(tmp_path / "m.int8.onnx")
    assert "DynamicQuantizeLSTM" in art.operators_config.read_text()
    assert StreamingPredictor(art.ort).contract.model.extra["quantization"]["kind"] == "int8"


def test_refuses_what_it_cannot_convert(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"existing \.onnx file"):
        to_ort(tmp_path / "missing.onnx")
    with pytest.raises(ExportError, match="no contract file"):
        read_contract_json(tmp_path / "missing.contract.json")
