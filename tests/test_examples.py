"""Every example in examples/ runs end to end in quick mode.

Each test imports the script and calls ``main([--quick, --out tmp])`` in this process (one
torch import for all of them), then checks what a reader relies on: the tables were
printed, every parity check passed (chunked == whole within 1e-5) and the plot exists.
The sentiment example needs the npm data set; without npm (or the network to reach the
registry) it is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("[0-9][0-9]_*.py"))

pytest.importorskip("torch")
pytest.importorskip("matplotlib")


def _load(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# what an example's own claims rest on, beyond tables, parity and a plot
REQUIRED = {
    "06_translation": {"scores", "attention_beats_every_baseline", "margin_over_best_baseline"},
    "10_transcription": {"cer_by_snr", "wer_by_snr", "pool_live", "rtf", "serve_packet_ms"},
    "11_pronunciation": {
        "scores",
        "attention_beats_every_baseline",
        "margin_over_best_baseline",
        "val_loss_by_epoch",
        "examples",
    },
}


def test_there_are_eleven_examples() -> None:
    assert len(SCRIPTS) == 11, SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_quick(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if name.startswith("05_"):
        from edgeseq.train.data import fetch_npm_sentiment

        try:
            fetch_npm_sentiment()
        except (RuntimeError, OSError, TimeoutError) as exc:
            pytest.skip(f"sentiment data unavailable: {exc}")
    import torch

    threads = torch.get_num_threads()
    try:
        results = _load(name).main(["--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)  # the examples use one thread; leave others as found
    out = capsys.readouterr().out

    assert results["quick"] is True
    assert results["tables"], "no table printed"
    for title in results["tables"]:
        assert title in out
    assert "\n----" in out or "\n-----" in out  # format_table's rule under the headers
    assert results["parity"], "no parity check ran"
    assert "chunked == whole" in out or "pool vs solo" in out
    for label, entry in results["parity"].items():
        assert entry.get("chunked_vs_whole", entry.get("max_abs")) <= 1e-5, (label, entry)
        if "onnx_vs_torch" in entry:
            assert entry["onnx_vs_torch"] <= entry["onnx_vs_torch_limit"], (label, entry)
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs), pngs
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["tables"].keys() == results["tables"].keys()
    assert REQUIRED.get(name, set()) <= results.keys(), REQUIRED[name] - results.keys()


def test_only_a_gallery_refresh_writes_the_committed_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordinary and quick runs plot into their artifacts folder; --gallery into plots/."""
    import hashlib

    import torch

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    common = importlib.import_module("_common")  # as the examples import it
    committed = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in common.PLOTS.glob("*")}
    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(common, "ARTIFACTS", tmp_path / "artifacts")
        for args, folder in (([], "01_stock_forecast"), (["--quick"], "01_stock_forecast-quick")):
            plain = common.start("01_stock_forecast", "Stock.", args)  # what a user types
            assert plain.out == plain.plots == tmp_path / "artifacts" / folder, args
        run = common.start("01_stock_forecast", "Stock.", ["--out", str(tmp_path)])
        assert run.plots == tmp_path and not run.quick
        plt = run.pyplot()
        run.save_plot(plt.figure(figsize=(2, 2)), "01_stock_forecast.png")
        assert (tmp_path / "01_stock_forecast.png").stat().st_size > 0
        gallery = common.start("01_stock_forecast", "Stock.", ["--out", str(tmp_path), "--gallery"])
        assert gallery.plots == common.PLOTS
        with pytest.raises(SystemExit):
            common.start("01_stock_forecast", "Stock.", ["--quick", "--gallery"])
    finally:
        torch.set_num_threads(threads)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in common.PLOTS.glob("*")} == (
        committed
    )


def test_run_all_writes_committed_results_only_for_the_gallery(tmp_path: Path) -> None:
    run_all = _load("run_all")
    run_all.ARTIFACTS, run_all.EXAMPLES = tmp_path / "artifacts", tmp_path / "examples"
    run_all.EXAMPLES.mkdir()  # holds no example scripts: nothing runs, only the results file
    assert run_all.main([]) == 0 and (run_all.ARTIFACTS / "results.json").exists()
    assert run_all.main(["--quick"]) == 0 and (run_all.ARTIFACTS / "results-quick.json").exists()
    assert not (run_all.EXAMPLES / "results.json").exists()
    assert run_all.main(["--gallery"]) == 0 and (run_all.EXAMPLES / "results.json").exists()
    with pytest.raises(SystemExit):
        run_all.main(["--quick", "--gallery"])
