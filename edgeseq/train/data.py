"""Data for edgeseq's examples and demo: real data sets that ship inside packages.

Every loader returns plain numpy arrays or Python lists. Only numpy and the
standard library are imported here; the packages that hold the data (the
``examples`` extra: ``pip install 'edgeseq[examples]'``) are imported inside the
loaders. :func:`load_demo_series` and :func:`load_text` need no extra package.
Nothing is downloaded at run time except :func:`fetch_npm_sentiment`, which asks
the npm registry through ``npm pack``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.resources
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import InputError
from edgeseq.vocab import Vocabulary  # re-exported: the examples' text helpers

__all__ = [
    "Vocabulary",
    "fetch_npm_sentiment",
    "load_basic_motions",
    "load_demo_series",
    "load_digits",
    "load_sentiment",
    "load_stock",
    "load_text",
    "load_translation_pairs",
    "train_val_test_split",
    "windows",
]

_EXTRA_HINT = "pip install 'edgeseq[examples]'"
_SENTIMENT_SPEC = "sentiment@5.0.2"
_SENTIMENT_SHA1 = "01e4396d9b5b17b1176f16c9d1a8be87b16cc1d6"  # npm's shasum for the tarball
_SENTIMENT_SOURCES = ("amazon", "imdb", "yelp")


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this loader needs the {package!r} package, which is not installed; "
            f"run: {_EXTRA_HINT}  (or: pip install {package})"
        ) from exc


def _date_column_csv(lines: Iterable[str], column: str, ticker: str | None = None):
    reader = csv.DictReader(lines)
    if column not in (reader.fieldnames or []):
        raise InputError(f"column {column!r} not in {reader.fieldnames}")
    rows = [r for r in reader if ticker is None or r["Ticker"] == ticker]
    dates = np.array([r["Date"] for r in rows], dtype="datetime64[D]")
    return dates, np.array([float(r[column]) for r in rows], dtype=np.float32)


def load_stock(symbol: str = "AAPL", column: str = "Close") -> tuple[np.ndarray, np.ndarray]:
    """Daily prices of one stock, 2000-03-01 to 2013-03-01 (fewer days for GOOG, FB).

    Source: ``bokeh_sampledata/_data/stocks.csv.gz`` from the PyPI package
    ``bokeh-sampledata`` (Quandl WIKI Prices). Licence: public domain, recorded
    in ``bokeh_sampledata-*.dist-info/licenses/licenses/datasets.json``, entry
    ``"module": "stocks"``.

    Parameters
    ----------
    symbol : {"AAPL", "IBM", "MSFT", "GOOG", "FB"}
    column : {"Close", "Open", "High", "Low", "Volume", "Adj Close"}
        ``Close`` is unadjusted: AAPL halves at its 2:1 splits on 2000-06-21
        and 2005-02-28, MSFT on 2003-02-18. ``Adj Close`` is split- and
        dividend-adjusted.

    Returns
    -------
    dates : np.ndarray, datetime64[D], shape [N]
        Trading days, ascending (N = 3270 for AAPL, IBM, MSFT).
    values : np.ndarray, float32, shape [N]
    """
    _require("bokeh_sampledata", "bokeh-sampledata")
    path = importlib.resources.files("bokeh_sampledata") / "_data" / "stocks.csv.gz"
    with gzip.open(io.BytesIO(path.read_bytes()), "rt", newline="") as f:
        dates, values = _date_column_csv(f, column, ticker=symbol)
    if dates.size == 0:
        raise InputError(f"unknown symbol {symbol!r}; expected AAPL, IBM, MSFT, GOOG or FB")
    return dates, values


def load_demo_series() -> tuple[np.ndarray, np.ndarray]:
    """IBM daily closes 2000-03-01..2013-03-01, shipped inside edgeseq (numpy only).

    File ``edgeseq/train/datasets/ibm_close.csv`` (``Date,Close``), the IBM rows of
    bokeh-sampledata's ``stocks.csv.gz`` (Quandl WIKI Prices). Licence: public
    domain, see ``edgeseq/train/datasets/README.md``. IBM had no split in this period.

    Returns
    -------
    dates : np.ndarray, datetime64[D], shape [3270]
    closes : np.ndarray, float32, shape [3270]
        Unadjusted closing price in US dollars, 55.07 to 211.0.
    """
    data = importlib.resources.files("edgeseq.train.datasets")
    text = (data / "ibm_close.csv").read_text("utf-8")
    return _date_column_csv(io.StringIO(text, newline=""), "Close")


def load_basic_motions() -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """BasicMotions: smartwatch accelerometer + gyroscope, 4 activities, 80 cases.

    Source: the UEA multivariate time series classification archive, as shipped
    in ``sktime/datasets/data/BasicMotions`` of the PyPI package ``sktime``
    (BSD-3-Clause). 10 s at 10 Hz per case; six channels (3-D accelerometer and
    3-D gyroscope).

    Returns
    -------
    X : np.ndarray, float32, shape [80, 100, 6]
        [case, time, channel].
    y : np.ndarray, int64, shape [80]
        Index into ``class_names``; 20 cases per class.
    class_names : list of str
        ``['badminton', 'running', 'standing', 'walking']``.
    is_train : np.ndarray, bool, shape [80]
        The archive's own split: True for the 40 TRAIN cases (the first 40),
        False for the 40 TEST cases.
    """
    datasets = _require("sktime.datasets", "sktime")
    parts = [datasets.load_basic_motions(split=s, return_type="numpy3D") for s in ("train", "test")]
    X = np.concatenate([p[0] for p in parts]).transpose(0, 2, 1).astype(np.float32)
    labels = np.concatenate([np.asarray(p[1]).astype(str) for p in parts])
    names, y = np.unique(labels, return_inverse=True)
    is_train = np.arange(len(y)) < len(parts[0][1])
    return np.ascontiguousarray(X), y.astype(np.int64), names.tolist(), is_train


_ASCII = ["'", "'", '"', '"', "-", "--", "...", "    "]
_TYPOGRAPHY = dict(
    zip(map(ord, "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\t"), _ASCII, strict=True)
)


def load_text(name: str = "pydoc") -> str:
    """A corpus for character-level models, cleaned to printable ASCII and newlines.

    ``"pydoc"``: the Python documentation topics that ship with CPython
    (``pydoc_data.topics.topics``, every topic in sorted key order, joined by
    blank lines). Licence: PSF License (Python documentation). About 465,000
    characters on CPython 3.11. Typographic quotes and dashes become ASCII;
    any other character outside printable ASCII is dropped.

    Returns
    -------
    str
    """
    if name != "pydoc":
        raise InputError(f"unknown text {name!r}; available: 'pydoc'")
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key].strip("\n") for key in sorted(topics))
    text = text.translate(_TYPOGRAPHY)
    return "".join(ch for ch in text if ch == "\n" or " " <= ch <= "~")


def fetch_npm_sentiment(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Fetch the npm package ``sentiment`` 5.0.2 and keep its labelled fixtures.

    Runs ``npm pack sentiment@5.0.2`` in a temporary directory, checks the
    tarball's SHA-1 against the registry's, and extracts
    ``package/test/fixtures/{amazon,imdb,yelp}.json`` and ``package/LICENSE.md``
    into ``<cache_dir>/sentiment-5.0.2/`` (``cache_dir`` defaults to
    ``$EDGESEQ_CACHE_DIR`` or ``~/.cache/edgeseq``), unless already there.

    Returns
    -------
    Path
        The directory holding the three JSON files.
    """
    default = os.environ.get("EDGESEQ_CACHE_DIR", Path.home() / ".cache" / "edgeseq")
    target = Path(cache_dir if cache_dir is not None else default) / "sentiment-5.0.2"
    wanted = [f"{s}.json" for s in _SENTIMENT_SOURCES]
    if all((target / w).is_file() for w in wanted):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"load_sentiment needs the npm client to fetch {_SENTIMENT_SPEC} "
            f"(install Node.js/npm), or the files {wanted} in {target}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [npm, "pack", _SENTIMENT_SPEC, "--silent"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)
        tgz = Path(tmp) / "sentiment-5.0.2.tgz"
        if proc.returncode != 0 or not tgz.is_file():
            raise RuntimeError(f"npm pack {_SENTIMENT_SPEC} failed: {proc.stderr.strip()}")
        digest = hashlib.sha1(tgz.read_bytes()).hexdigest()
        if digest != _SENTIMENT_SHA1:
            raise RuntimeError(f"{tgz.name}: SHA-1 {digest}, expected {_SENTIMENT_SHA1}")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tgz) as tar:
            for member in ["package/LICENSE.md"] + [f"package/test/fixtures/{w}" for w in wanted]:
                part = target / (Path(member).name + ".part")
                part.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
                part.replace(target / Path(member).name)
    return target


def load_sentiment(
    sources: Sequence[str] = _SENTIMENT_SOURCES,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[str, int]]:
    """Labelled review sentences: 1,000 each from Amazon, IMDb and Yelp.

    The UCI "Sentiment Labelled Sentences" data set (Kotzias, Denil, de Freitas,
    Smyth, KDD 2015), as test fixtures of the npm package ``sentiment`` 5.0.2
    (MIT). The empty final record of each file (class null) is dropped and
    surrounding whitespace is stripped. Fetched once with
    :func:`fetch_npm_sentiment` (needs ``npm``), then read from the cache.

    Parameters
    ----------
    sources : sequence of {"amazon", "imdb", "yelp"}
    cache_dir : path, optional
        As for :func:`fetch_npm_sentiment`.

    Returns
    -------
    list of (str, int)
        ``(sentence, label)`` with label 1 positive, 0 negative; 500 of each per
        source, in file order (amazon, imdb, yelp).
    """
    unknown = set(sources) - set(_SENTIMENT_SOURCES)
    if unknown:
        raise InputError(f"unknown sources {sorted(unknown)}; expected {_SENTIMENT_SOURCES}")
    folder = fetch_npm_sentiment(cache_dir)
    pairs: list[tuple[str, int]] = []
    for source in sources:
        records = json.loads((folder / f"{source}.json").read_text("utf-8"))
        pairs += [(r["text"].strip(), int(r["class"])) for r in records if r["class"] is not None]
    return pairs


def load_translation_pairs(lang: str = "fr") -> list[tuple[str, str]]:
    """English → ``lang`` UI strings from Django's message catalogs (about 760 for fr).

    Source: every ``django/**/locale/<lang>/LC_MESSAGES/*.mo`` in the PyPI
    package ``Django`` (translations by the Django community; BSD-3-Clause).
    Plural forms, entries with a message context, the header and empty
    translations are skipped; a repeated English string keeps its first
    translation (catalogs read in sorted path order). About a fifth of the pairs
    contain placeholders such as ``%(name)s``, ``%s`` or ``{}``, left as they are.
    Text is Unicode (accents, ``’``, non-breaking spaces before French ``:;?!``).

    Returns
    -------
    list of (str, str)
        ``(english, translation)``.
    """
    import gettext

    django = _require("django", "django")
    root = Path(django.__file__).parent
    catalogs = sorted(root.glob(f"**/locale/{lang}/LC_MESSAGES/*.mo"))
    if not catalogs:
        raise InputError(f"Django ships no catalogs for language {lang!r}")
    pairs: dict[str, str] = {}
    for path in catalogs:
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
        for key, value in catalog.items():
            if isinstance(key, str) and key and "\x04" not in key and value:
                pairs.setdefault(key, value)
    return list(pairs.items())


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 handwritten digits of scikit-learn, scaled to [0, 1].

    Source: ``sklearn.datasets.load_digits`` (scikit-learn, BSD-3-Clause), a
    copy of the test set of the UCI "Optical Recognition of Handwritten Digits"
    data set (Alpaydin and Kaynak, 1998), shipped in the wheel.

    Returns
    -------
    images : np.ndarray, float32, shape [1797, 8, 8]
        [image, row, column]; the original counts 0..16 divided by 16.
    labels : np.ndarray, int64, shape [1797]
        Digit 0..9.
    """
    datasets = _require("sklearn.datasets", "scikit-learn")
    bunch = datasets.load_digits()
    images = (np.asarray(bunch.images) / 16.0).astype(np.float32)
    return images, np.asarray(bunch.target, dtype=np.int64)


def windows(series: np.ndarray, length: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over a series, each paired with the value ``horizon`` steps on.

    Parameters
    ----------
    series : array, shape [N, ...]
    length, horizon : int
        Window length, and steps from a window's last element to its target (>= 1).

    Returns
    -------
    inputs : np.ndarray, shape [M, length, ...], dtype of ``series``
        ``inputs[i] = series[i : i + length]``, with M = N - length - horizon + 1.
    targets : np.ndarray, shape [M, ...]
        ``targets[i] = series[i + length + horizon - 1]``.
    """
    series = np.asarray(series)
    if length < 1 or horizon < 1:
        raise InputError(f"length and horizon must be >= 1, got {length} and {horizon}")
    count = series.shape[0] - length - horizon + 1
    if count < 1:
        raise InputError(f"series of {series.shape[0]} steps is too short for {length}+{horizon}")
    index = np.arange(count)[:, None] + np.arange(length)[None, :]
    return series[index], series[length + horizon - 1 :]


def train_val_test_split(
    n: int, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays for a train / validation / test split of ``n`` items.

    With ``seed=None`` the split is chronological (contiguous blocks in order,
    right for time series); with a seed the indices are shuffled first.

    Returns
    -------
    train, val, test : np.ndarray, int64
        Disjoint, together ``range(n)``; sizes ``round(f * n)`` for train and
        val, the rest for test.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise InputError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    order = np.arange(n, dtype=np.int64)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    n_train = round(fractions[0] * n)
    n_val = min(round(fractions[1] * n), n - n_train)
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
