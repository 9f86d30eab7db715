"""docs/porting.md runs: every snippet, in order, in one folder, on every runtime it names.

Shell blocks run line by line with this environment's ``edgeseq``; Python blocks run in one
shared namespace, as a reader following the page would. Their asserts are the checks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "porting.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(DOC.read_text(encoding="utf-8"))]


def test_every_block_is_a_language_this_test_runs() -> None:
    langs = [lang for lang, _ in _blocks()]
    assert set(langs) == {"python", "sh"}, langs
    assert langs.count("python") >= 10


def test_readme_links_the_porting_guide() -> None:
    assert "(docs/porting.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for runtime in ("openvino", "tract"):
        pytest.importorskip(runtime, reason=f"{runtime}: pip install 'edgeseq[runtimes]'")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace: dict = {"__name__": "porting_doc"}
    ran = 0
    for i, (lang, code) in enumerate(_blocks()):
        if lang == "sh":
            for line in code.splitlines():
                if line.strip():
                    res = subprocess.run(line, shell=True, env=env, capture_output=True, text=True)
                    assert res.returncode == 0, f"block {i}: {line}\n{res.stdout}\n{res.stderr}"
        else:
            exec(compile(code, f"{DOC.name}, block {i}", "exec"), namespace)
        ran += 1
    assert ran == len(_blocks())
    assert Path("unrolled.step.onnx").is_file()
