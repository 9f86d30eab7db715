"""The README says what works today: commands that exist, paths that exist, the demo's
own labels, the install path the tests use, and what full test coverage needs."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {p: p.read_text() for p in (ROOT / "README.md", ROOT / "examples" / "README.md")}


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def test_make_targets_in_the_docs_exist() -> None:
    targets = set(re.findall(r"^([a-z0-9-]+):", (ROOT / "Makefile").read_text(), re.M))
    for path, text in DOCS.items():
        for name in re.findall(r"make ([a-z0-9-]+)", text):
            assert name in targets, f"{path.name} mentions `make {name}`, not in the Makefile"


def test_install_says_what_works_today() -> None:
    install = _section("Install")
    assert "not on PyPI" in install
    assert not re.search(r"`pip install 'edgeseq\[|`pip install edgeseq`\s*[—-]", install)
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    assert "make wheel" in install and f"edgeseq-{version}-py3-none-any.whl" in install
    packaging = (ROOT / "tests" / "test_packaging.py").read_text()
    assert '"wheel"' in packaging and "venv" in packaging  # the tests use the same path


def test_paths_and_modules_in_the_docs_exist() -> None:
    for path, text in DOCS.items():
        base = path.parent
        for token in re.findall(r"`([^`\s]+)`", text):
            if token.startswith("edgeseq.") and re.fullmatch(r"[\w.]+", token):
                module, _, attr = token, "", ""
                while True:  # the longest importable prefix, then attributes
                    try:
                        obj = importlib.import_module(module)
                        break
                    except ModuleNotFoundError:
                        module, _, last = module.rpartition(".")
                        attr = f"{last}.{attr}" if attr else last
                for name in filter(None, attr.split(".")):
                    assert hasattr(obj, name), f"{path.name}: `{token}` does not resolve"
                    obj = getattr(obj, name)
            elif re.fullmatch(r"[\w.-]+(/[\w.*-]+)+/?", token) and not token.startswith("~"):
                hits = list(ROOT.glob(token)) + list(base.glob(token))
                generated = token.startswith(("dist/", "examples/artifacts", ".cache/"))
                assert hits or generated, f"{path.name} mentions `{token}`, which does not exist"


def test_demo_block_shows_what_the_demo_prints() -> None:
    from edgeseq.train.demo import DemoReport

    block = _section("`make demo`").split("```")[1]
    fake = DemoReport(ROOT, 1, 1, 1, 1.0, 0.0, 0.0, 1.0, 1.0, 1024, 1.0, 1.0, 0.5)
    labels = [ln.split("  ")[0] for ln in fake.table().splitlines()[2:]]
    assert [ln.split("  ")[0] for ln in block.strip().splitlines()[2:]] == labels


def test_tests_section_names_what_ci_installs() -> None:
    tests = _section("Tests")
    ci = (ROOT / ".ci" / "run").read_text()
    packages = set(re.findall(r'need="\$need ([\w-]+)"', ci))
    assert packages, "could not read the apt packages .ci/run installs"
    for package in packages:
        assert f"`{package}`" in tests, f"the README's Tests section does not name {package}"
    assert "skipped" in tests and "-rs" in tests


def test_demo_block_times_fall_in_the_stated_ranges() -> None:
    """Times vary with the machine and its load: the README gives ranges, and the run it
    shows lies inside them; parity is within the bound `edgeseq demo` enforces."""
    section = _section("`make demo`")
    block, after = section.split("```")[1], section.split("```")[2]
    shown = {ln.split("  ")[0]: ln.split("  ")[-1].strip() for ln in block.strip().splitlines()}
    text = " ".join(after.split())
    num = r"(\d+(?:\.\d+)?)"
    ranges = {
        "training": re.search(rf"training has taken {num}–{num} s", text),
        "latency per frame, StreamingPredictor": re.search(
            rf"{num}–{num} µs \(StreamingPredictor\)", text
        ),
        "latency per frame, PyTorch eager": re.search(rf"{num}–{num} µs \(PyTorch eager\)", text),
    }
    for label, found in ranges.items():
        assert found, f"the README states no range for {label!r}: {text[:300]}"
        low, high = float(found[1]), float(found[2])
        value = float(re.findall(num, shown[label])[-1])
        assert low <= value <= high, f"{label}: {value} is outside the stated {low}–{high}"
    for label in ("parity, frame by frame (max abs)", "parity, chunks of 7 (max abs)"):
        assert float(shown[label]) <= 1e-4, (label, shown[label])
    mae, naive = (float(shown[k].lstrip("$")) for k in ("forecast MAE (held out)",
                                                          "naive last-value MAE"))  # fmt: skip
    assert abs(float(shown["MAE / naive MAE"]) - mae / naive) < 2e-3, shown  # both rounded
