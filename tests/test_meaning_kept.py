"""Inputs keep their meaning: what the model gets is what the caller gave, or a clear error.

- a constant whose cast would change its value (an int that wraps, a bool from 5, a
  float that overflows) is refused, naming the value before and after;
- a window or left context other than the one the contract records is refused;
- ``--columns`` that hand the model its own recorded features in another order are
  refused (the model would read pressure as temperature);
- audio reaches the model at the rate it expects: ``--pcm --rate`` other than the
  contract's, or a ``--constant sr=`` other than the file's rate, is refused; a WAV that
  is resampled, or fed at its own rate, says so on stderr;
- training data with a value float32 cannot hold (NaN, Inf, 1e39) is refused with its line.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from _cli import edgeseq, one_error_line, sensor
from _models import VAD_CONTEXT, zoo

from edgeseq.cli._frames import BadRecord, CsvFrames, FrameLayout
from edgeseq.contract import GraphIO
from edgeseq.errors import InputError
from edgeseq.runtime import StreamingPredictor
from edgeseq.runtime._declared import constant_values

KW = {"state": {"state": "stateN"}, "context": VAD_CONTEXT, "window": 8}


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """The VAD with its pairs, window 8, context 4 and rate 16000 Hz in its contract."""
    out = tmp_path_factory.mktemp("meaning") / "vad.edgeseq.onnx"
    args = ["--state", "state:stateN", "--constant", "sr=16000", "--context", VAD_CONTEXT]
    done = edgeseq("inspect", zoo.get("vad"), *args, "--window", 8, "--rate", 16000,
                   "--write-contract", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize(
    ("dtype", "value", "before", "after"),
    [
        ("int32", np.int64(2**32 + 16000), "4294983296", "16000"),  # wraps to a plausible rate
        ("int64", np.uint64(2**63), "9223372036854775808", "-9223372036854775808"),
        ("uint8", np.array([3, -1]), "-1", "255"),
        ("bool", 5, "5", "True"),
        ("float16", [1.0, 1e6], "1000000.0", "inf"),
    ],
)
def test_a_constant_cast_that_changes_a_value_is_refused(dtype, value, before, after) -> None:
    g = GraphIO("c", [] if np.ndim(value) == 0 else [np.size(value)], dtype)
    with pytest.raises(InputError, match=rf"got {before}, which the cast to {dtype} would "
                       rf"change to {after}\."):  # fmt: skip
        constant_values({"c": value}, [g])
    ok = {"int32": 16000, "int64": 7, "uint8": [3, 255], "bool": 1, "float16": [1.0, 6e4]}
    constant_values({"c": ok[dtype]}, [g])  # values the type holds pass unchanged


def test_the_vads_rate_constant_cannot_wrap() -> None:
    with pytest.raises(InputError, match=r"constants\['sr'\]: expected values from"):
        StreamingPredictor(zoo.get("vad"), constants={"sr": np.uint64(2**64 - 1)}, **KW)


@pytest.mark.parametrize("given", [{"window": 16}, {"context": 2}, {"window": 4, "context": 8}])
def test_a_window_or_context_other_than_the_recorded_one_is_refused(stored, given) -> None:
    sr = {"sr": np.array(16000)}
    with pytest.raises(InputError, match=r"contract records .*expected that or none"):
        StreamingPredictor(stored, constants=sr, **given)
    p = StreamingPredictor(stored, constants=sr, window=8, context=VAD_CONTEXT)  # the same: ok
    assert (p.engine.windows.window, p.engine.context) == (8, VAD_CONTEXT)


def test_a_rate_constant_against_the_recorded_rate_is_refused(stored) -> None:
    """The contract's windows and context are samples at its recorded rate."""
    with pytest.raises(InputError, match=r"constants\['sr'\] tells the model its samples are at "
                       r"8000 Hz; this model's contract records 16000 Hz"):  # fmt: skip
        StreamingPredictor(stored, constants={"sr": np.array(8000)})
    line = one_error_line(edgeseq("stream", stored, "--constant", "sr=8000", "--pcm", "s16le",
                                  "--rate", 8000, input=b""))  # fmt: skip
    assert "--constant 'sr' tells the model its samples are at 8000 Hz" in line


def _frames(header: str, columns: list[str], names=("temp", "rh", "pressure")) -> list:
    lines = [header.encode(), b"0,1,2,3"]
    return list(CsvFrames(lines, FrameLayout(3, names), columns=columns))


@pytest.mark.parametrize("columns", [["pressure", "temp", "rh"], ["4", "2", "3"]])
def test_columns_that_reorder_the_recorded_features_are_refused(columns) -> None:
    with pytest.raises(InputError, match=r"feeds column 'pressure' as the model's feature 1.*"
                       r"--columns temp,rh,pressure"):  # fmt: skip
        _frames("time,temp,rh,pressure", columns)


def test_columns_in_the_models_order_or_under_other_names_are_fed() -> None:
    (frame,) = _frames("time,temp,rh,pressure", ["temp", "rh", "pressure"])
    assert not isinstance(frame, BadRecord) and frame.values.tolist() == [1, 2, 3]
    (frame,) = _frames("time,c,b,a", ["a", "b", "c"])  # not the recorded names: the user maps
    assert frame.values.tolist() == [3, 2, 1]


def _wav(path: Path, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.random.default_rng(0).standard_normal(rate // 50) * 3000).astype("<i2"))
    return path


def test_audio_reaches_the_model_at_the_rate_it_expects(stored: Path, tmp_path: Path) -> None:
    pcm = np.zeros(64, "<i2").tobytes()
    line = one_error_line(edgeseq("stream", stored, "--constant", "sr=16000", "--pcm",
                                  "s16le", "--rate", 8000, input=pcm))  # fmt: skip
    assert "at 8000 Hz; this model's contract records 16000 Hz" in line
    wav = _wav(tmp_path / "a.wav", 22050)
    done = edgeseq("stream", stored, "-i", wav, "--constant", "sr=16000")
    assert done.returncode == 0, done.stderr
    assert "# resampled" in done.stderr and "from 22050 Hz to 16000 Hz" in done.stderr
    vad = ["--state", "state:stateN", "--context", VAD_CONTEXT, "--window", 8]
    line = one_error_line(edgeseq("stream", zoo.get("vad"), "-i", wav, "--constant",
                                  "sr=16000", *vad))  # fmt: skip
    assert "--constant sr=16000 tells the model its samples are at 16000 Hz" in line
    assert "are at 22050 Hz" in line
    done = edgeseq("stream", zoo.get("vad"), "-i", wav, "--constant", "sr=22050", *vad)
    assert done.returncode == 0 and "fed at its own 22050 Hz" in done.stderr, done.stderr


@pytest.mark.parametrize("bad", ["nan", "inf", "-1e39"])
def test_training_data_with_a_value_float32_cannot_hold_is_refused(tmp_path, bad) -> None:
    """It used to train to a NaN loss and write the checkpoint anyway."""
    rows = [f"{t},{1 + t % 3}.0,{2 + t % 2}.0" for t in range(12)]
    rows[4] = f"4,{bad},3.0"
    data = tmp_path / "series.csv"
    data.write_text("t,a,b\n" + "\n".join(rows) + "\n")
    args = ["train", "--task", "forecast", "--data", data, "--epochs", 1, "-o", tmp_path / "m.pt"]
    line = one_error_line(edgeseq(*args))
    assert f"line 6, column 'a': expected a finite float32 number, got '{bad}'" in line
    assert not (tmp_path / "m.pt").exists()


def test_a_headerless_input_says_its_fields_are_taken_by_position(tmp_path: Path) -> None:
    layout = FrameLayout(3, ("temp", "rh", "pressure"))
    frames = CsvFrames([b"1,2,3"], layout)
    assert [f.values.tolist() for f in frames] == [[1, 2, 3]]
    assert frames.assumed == (
        "no header line: fields fed by position as the model's features temp, rh, pressure "
        "(a header has them picked by name)"
    )
    frames = CsvFrames([b"rh,temp,pressure", b"1,2,3"], layout)
    assert [f.values.tolist() for f in frames] == [[2, 1, 3]] and frames.assumed is None
    s = sensor()  # trained on temp, rh, pressure: the stream's summary line says so
    done = edgeseq("stream", s.model, input="20,50,1013\n21,49,1012\n")
    assert done.returncode == 0, done.stderr
    assert "# 2 frames streamed; no header line: fields fed by position as the model's " in (
        done.stderr
    )
