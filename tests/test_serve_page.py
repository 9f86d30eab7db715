"""The page of edgeseq serve in headless Chromium: drop a CSV, see its outputs plotted.

Debian's ``chromium`` driven by ``playwright-core`` (tests/browser/package.json, pointed
at /usr/bin/chromium; no browser download). The values the page plotted must equal a
local StreamingPredictor's outputs for the same CSV; the screenshot is kept in
``test-artifacts/serve_page.png`` (or ``$EDGESEQ_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _models import zoo
from _serve import ServerProcess

from edgeseq.runtime import StreamingPredictor

ROOT = Path(__file__).resolve().parents[1]
BROWSER = Path(__file__).resolve().parent / "browser"
CHROMIUM = os.environ.get("EDGESEQ_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("EDGESEQ_ARTIFACTS", ROOT / "test-artifacts"))
TOKEN = "page-test-token"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run does)"
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install npm; .ci/run does)"
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        return "tests/browser has no node_modules (make install runs npm ci there)"
    return None


@pytest.mark.timeout(300)
def test_dropped_csv_is_streamed_and_plotted(tmp_path: Path) -> None:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    path = zoo.get("lstm")
    rng = np.random.default_rng(21)
    frames = np.cumsum(rng.standard_normal((60, 3)).astype(np.float32) * 0.3, axis=0)
    csv = tmp_path / "sensor.csv"
    lines = ["ax,ay,az", *(",".join(repr(float(v)) for v in row) for row in frames)]
    csv.write_text("\n".join(lines) + "\n")
    expected = StreamingPredictor(path).step(np.asarray(frames, np.float32))  # (60, 2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "serve_page.png"
    shot.unlink(missing_ok=True)
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(TOKEN + "\n")
    with ServerProcess(path, "--token-file", str(token_file)) as server:
        cmd = [
            "node", str(BROWSER / "drop_csv.mjs"), "--url", server.http + "/", "--csv", str(csv),
            "--out", str(shot), "--token", TOKEN, "--chromium", CHROMIUM,
        ]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=BROWSER)
        assert run.returncode == 0, run.stderr[-3000:]
        shown = json.loads(run.stdout.strip().splitlines()[-1])
        server.wait_log("open   stream=")  # read from its stderr by a thread
    assert shown["error"] is None, shown
    assert shown["pageErrors"] == [], shown["pageErrors"]
    # before the token is typed in, the page's first requests are refused: nothing else fails
    assert all("401" in e for e in shown["consoleErrors"]), shown["consoleErrors"]
    assert shown["frames"] == 60 and "done: 60 frames" in shown["status"]
    np.testing.assert_array_equal(np.asarray(shown["values"], np.float32), expected)
    assert "lstm" in shown["model"] and shown["counterFrames"] >= 60
    assert shown["plotPixels"] > 500, "the plot has no coloured lines"
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1000 and height >= 600 and len(png) > 20_000
    print(f"screenshot: {shot}")
