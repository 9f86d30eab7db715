"""`edgeseq stream` (and `quantize --data`) input edges, through the installed command.

A header is a line of names; any other line is a frame and must be exactly right, or it
stops the stream with its line number (`--on-error stop`, the default) or is reported
and skipped (`--on-error skip`) with the state unchanged. Columns are picked by the
feature names recorded at train time, or by `--columns`. Offline models need `--whole`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading

import numpy as np
import pytest
from _cli import COLUMNS, EDGESEQ, edgeseq, offline_model, one_error_line, sensor

from edgeseq.runtime import StreamingPredictor


def _outputs(stdout: str) -> np.ndarray:
    return np.array([[float(v) for v in ln.split(",")] for ln in stdout.splitlines()])


def _reference(frames: np.ndarray, model=None) -> np.ndarray:
    p = StreamingPredictor(model or sensor().model)
    return np.stack([p.step(f) for f in np.asarray(frames, np.float32)])


def test_train_records_feature_names_and_stream_picks_them() -> None:
    s = sensor()
    assert "features (3, in this order): temp, rh, pressure; not used: time" in s.train_output
    assert StreamingPredictor(s.model).contract.features == list(COLUMNS)
    shown = edgeseq("inspect", s.model).stdout
    assert re.search(r"^features\s+temp, rh, pressure$", shown, re.M), shown
    # the training CSV itself, timestamp column and all, streams as the model was trained
    done = edgeseq("stream", s.model, "-i", s.csv)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_outputs(done.stdout), _reference(s.frames), atol=1e-4)
    assert f"# {len(s.frames)} frames streamed" in done.stderr


def test_columns_by_name_order_or_position() -> None:
    s = sensor()
    want = _reference(s.frames[:5])
    shuffled = "pressure,x,temp,rh\n" + "".join(f"{c},7,{a},{b}\n" for a, b, c in s.frames[:5])
    done = edgeseq("stream", s.model, input=shuffled)  # the header's names pick the columns
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_outputs(done.stdout), want, atol=1e-4)
    bare = "".join(f"{c},7,{a},{b}\n" for a, b, c in s.frames[:5])
    done = edgeseq("stream", s.model, "--columns", "3,4,1", input=bare)  # positions, no header
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_outputs(done.stdout), want, atol=1e-4)
    renamed = "p,x,t,h\n" + bare
    line = one_error_line(edgeseq("stream", s.model, input=renamed))
    assert "temp, rh, pressure" in line and "--columns" in line
    done = edgeseq("stream", s.model, "--columns", "t,h,p", input=renamed)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_outputs(done.stdout), want, atol=1e-4)
    line = one_error_line(edgeseq("stream", s.model, "--columns", "temp,rh,pressure", input=bare))
    assert "no header" in line
    twice = "temp,rh,temp,pressure\n" + "".join(f"{a},{b},{a},{c}\n" for a, b, c in s.frames[:5])
    line = one_error_line(edgeseq("stream", s.model, input=twice))
    assert "names 'temp' 2 times" in line and "--columns" in line, line


GOOD = "20.1,50.2,1013.0\n"
BAD_LINES = [  # (input, the bad line's number, frames streamed before it, message)
    ("20,,1013\n" + GOOD, 1, 0, "field 2 is empty"),
    ("20,40,1013,\n" + GOOD, 1, 0, "trailing delimiter"),
    ("temp,rh,pressure\n" + GOOD + "20,40\n" + GOOD, 3, 1, "expected 3 fields (the header's"),
    (GOOD + GOOD + "20,1013,5,6\n", 3, 2, "expected 3 values per frame (temp, rh, pressure)"),
    (GOOD + "20,abc,1013\n", 2, 1, "'abc' is not a number"),
    (GOOD + "nan,50,1013\n", 2, 1, "not a finite float32 number"),
    (GOOD + "# a comment\n\n" + "1e39,50,1013\n", 4, 1, "not a finite float32 number"),
    (b"20,50,1013\n\xff\xfe1,2,3\n", 2, 1, "not UTF-8"),
    ("temp,rh,pressure\ntemp,rh,pressure\n", 2, 0, "'temp' is not a number"),
]


@pytest.mark.parametrize(("feed", "lineno", "before", "needle"), BAD_LINES)
def test_a_bad_line_stops_with_its_number(
    feed: str | bytes, lineno: int, before: int, needle: str
) -> None:
    done = edgeseq("stream", sensor().model, input=feed)
    line = one_error_line(done)
    assert line.startswith(f"Error: line {lineno}: ") and needle in line, line
    assert len(done.stdout.splitlines()) == before, done.stdout  # earlier lines were streamed


def test_skip_reports_bad_lines_and_keeps_the_state() -> None:
    s = sensor()
    good = s.frames[:6]
    rows = [",".join(map(str, f)) for f in good]
    feed = "\n".join([rows[0], "20,,1013", rows[1], rows[2], "x,y,z", rows[3], "1,2", rows[4],
                      "nan,1,2", rows[5]]) + "\n"  # fmt: skip
    done = edgeseq("stream", s.model, "--on-error", "skip", input=feed)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_outputs(done.stdout), _reference(good), atol=1e-4)
    for lineno in (2, 5, 7, 9):
        assert f"# skipped line {lineno}: " in done.stderr, done.stderr
    assert "# 6 frames streamed, 4 bad lines skipped" in done.stderr


def test_live_pipe_outputs_each_line_as_it_arrives_and_survives_a_bad_one() -> None:
    s = sensor()
    proc = subprocess.Popen(
        [str(EDGESEQ), "stream", str(s.model), "--on-error", "skip", "--format", "json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    lines: queue.Queue[str] = queue.Queue()
    errors: queue.Queue[str] = queue.Queue()
    for pipe, sink in ((proc.stdout, lines), (proc.stderr, errors)):
        threading.Thread(target=lambda p=pipe, q=sink: [q.put(x) for x in p], daemon=True).start()
    try:
        want = _reference(s.frames[:3])
        for k, feed in enumerate([s.frames[0], "20,oops,1013", s.frames[1], s.frames[2]]):
            text = feed if isinstance(feed, str) else ",".join(map(str, feed))
            proc.stdin.write(text + "\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            if isinstance(feed, str):  # the bad line is reported while the pipe stays open
                assert "line 2" in errors.get(timeout=60)
                assert proc.poll() is None
                continue
            rec = json.loads(lines.get(timeout=60))  # before stdin is closed
            n = rec["frame"]
            np.testing.assert_allclose(rec["output"], want[n - 1], atol=1e-4)
            assert n == k + (k == 0)  # frames 1, 2, 3 for input lines 1, 3, 4
        proc.stdin.close()  # type: ignore[union-attr]
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
            proc.wait(timeout=10)


def test_offline_model_needs_whole() -> None:
    model = offline_model()
    x = np.random.default_rng(1).standard_normal((9, 3)).astype(np.float32)
    feed = "".join(",".join(f"{v:.6f}" for v in f) + "\n" for f in x)
    line = one_error_line(edgeseq("stream", model, input=feed))
    assert "offline" in line and "--whole" in line
    done = edgeseq("stream", model, "--whole", input=feed)
    assert done.returncode == 0, done.stderr
    want = StreamingPredictor(model).step(np.round(x, 6))
    np.testing.assert_allclose(_outputs(done.stdout), want, atol=1e-5)
    assert "# 9 frames streamed" in done.stderr


def test_quantize_data_reads_csv_like_stream(tmp_path) -> None:
    s = sensor()
    out = tmp_path / "q.onnx"
    done = edgeseq("quantize", s.model, "-o", out, "--int8", "--data", s.csv)  # recorded names
    assert done.returncode == 0, done.stderr
    assert f"1 sequence(s) x {len(s.frames)} frames" in done.stdout
    bare = tmp_path / "bare.csv"  # no header: columns by position; line 51 is bad
    bare.write_text("".join(f"x,{a},{b},{c}\n" for a, b, c in s.frames[:50]) + "x,1,,3\n")
    line = one_error_line(edgeseq("quantize", s.model, "-o", out, "--int8", "--data", bare,
                                  "--columns", "2,3,4"))  # fmt: skip
    assert "line 51" in line and "field 3 is empty" in line


def test_windowed_model_from_csv_and_a_wav_whose_tail_completes_no_window(tmp_path) -> None:
    """One line per completed window; a call that completes none prints nothing (no crash)."""
    import wave

    from _models import VAD_CONTEXT, zoo

    vad = zoo.get("vad")
    opts = ["--state", "state:stateN:2,batch,16", "--constant", "sr=16000"]
    opts += ["--context", str(VAD_CONTEXT), "--window", "8"]
    x = np.round(np.random.default_rng(0).standard_normal(4100) * 0.2, 4).astype(np.float32)
    p = StreamingPredictor(vad, state={"state": "stateN"}, constants={"sr": np.array(16000)},
                           context=VAD_CONTEXT, window=8)  # fmt: skip
    want = p.step(x[:44])[:, 0]  # 5 windows; 4 samples stay pending
    done = edgeseq("stream", vad, *opts, input="".join(f"{v}\n" for v in x[:44]))
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose([float(v) for v in done.stdout.split()], want, atol=1e-6)
    pcm = np.round(x * 10000).astype(np.int16)  # 4096 samples, then a 4-sample block
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.astype("<i2").tobytes())
    done = edgeseq("stream", vad, *opts, "-i", tmp_path / "a.wav")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 4096 // 8 and "512 outputs streamed" in done.stderr


def test_another_separator_is_named_with_the_flag_to_pass() -> None:
    s = sensor()
    rows = [tuple(f) for f in s.frames[:2]]
    semi = "temp;rh;pressure\n" + "".join(f"{a};{b};{c}\n" for a, b, c in rows)
    line = one_error_line(edgeseq("stream", s.model, input=semi))
    assert "separated by ';': pass -d ';'" in line, line
    bare = "".join(f"{a};{b};{c}\n" for a, b, c in rows)
    line = one_error_line(edgeseq("stream", s.model, "--columns", "1,2,3", input=bare))
    assert "pass -d ';'" in line, line
    done = edgeseq("stream", s.model, "-d", ";", input=semi)
    assert done.returncode == 0, done.stderr
    want = _reference(s.frames[:2])
    np.testing.assert_allclose(_outputs(done.stdout.replace(";", ",")), want, atol=1e-4)
    tabs = semi.replace(";", "\t")
    line = one_error_line(edgeseq("stream", s.model, input=tabs))
    assert "pass -d '\\t'" in line, line
    done = edgeseq("stream", s.model, "-d", "\\t", input=tabs)  # as typed: -d '\t'
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_outputs(done.stdout.replace("\t", ",")), want, atol=1e-4)
