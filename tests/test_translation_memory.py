"""The device's translation memory (numpy + json): the picks scikit-learn's TF-IDF + difflib
memory makes, ties included, a file beside the model, and a device pipeline that
translates with it while torch, onnx, scikit-learn and scipy cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.errors import InputError, ModelLoadError
from edgeseq.runtime import EncoderDecoder, TranslationMemory
from edgeseq.runtime.memory import char_ngrams

REPO = Path(__file__).resolve().parents[1]
SEP = "\x1e"


@pytest.fixture(scope="module")
def catalogue() -> tuple[list[str], list[str], list[str]]:
    """300 stored Django English -> French pairs, 100 held-out English, plus ties: exact
    duplicates, case variants (equal cosines, different ratios), and twelve copies of one
    string (a tie at the tenth candidate)."""
    from edgeseq.train.data import load_translation_pairs

    pairs = [(e, f) for e, f in load_translation_pairs("fr") if max(len(e), len(f)) <= 40]
    order = np.random.default_rng(0).permutation(len(pairs))[:400]
    pairs = [pairs[i] for i in order]
    en, fr = [e for e, _ in pairs[:300]], [f for _, f in pairs[:300]]
    en += ["Save", "Save", "SAVE", "save", *["Delete"] * 12, "DELETE"]
    fr += ["Enregistrer", "Sauver", "ENREGISTRER", "sauver", *["Supprimer"] * 12, "SUPPRIMER"]
    return en, fr, [e for e, _ in pairs[300:]] + ["Save", "save", "delete", "Delete", "DELETE"]


def test_char_ngrams_are_scikit_learns() -> None:
    pytest.importorskip("sklearn", reason="scikit-learn comes with the examples extra")
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyze = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).build_analyzer()
    for text in ["", "a", "I am", "  Spaces\t\tand\nlines  ", "Café %s: «x»", "ab\x1ecd"]:
        assert char_ngrams(text) == analyze(text), text


def test_picks_equal_scikit_learns_on_catalogue_pairs_ties_included(catalogue) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn comes with the examples extra")
    sys.path.insert(0, str(REPO / "examples"))
    from _seq2seq import memory_baseline, sklearn_memory
    from sklearn.feature_extraction.text import TfidfVectorizer

    en, fr, queries = catalogue
    index = list(range(len(en)))  # outputs = indices: the picks themselves are compared
    memory = TranslationMemory(en, index)
    # the cosines are scikit-learn's bit for bit (same summation order)
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    known = vec.fit_transform(en).T.tocsr()
    for q in queries[:50] + en[:50]:
        np.testing.assert_array_equal(memory.cosines(q), (vec.transform([q]) @ known).toarray()[0])
    ours, theirs = memory.lookup_batch(queries), sklearn_memory(en, index, queries, chunk=64)
    assert ours == theirs
    assert memory.leave_one_out() == sklearn_memory(en, index, chunk=64)
    assert memory_baseline(en, fr, queries) == [fr[i] for i in ours]
    # the tie rule: equal cosine and ratio -> lower index; the case variant with the
    # higher ratio wins though its cosine ties; of equal copies the first; 'DELETE' (ratio
    # 1) comes after more than ten equal cosines, so is no candidate, and the first wins
    save, delete = en.index("Save"), en.index("Delete")
    assert ours[-5:] == [save, en.index("save"), delete, delete, delete]
    assert memory.nearest("Save", exclude=save) == en.index("Save", save + 1)
    assert memory.nearest("Delete", exclude=delete) == en.index("Delete", delete + 1)


def test_save_load_keeps_every_pick_and_refuses_bad_files(catalogue, tmp_path: Path) -> None:
    en, fr, queries = catalogue
    memory = TranslationMemory(en, fr, separator="|")
    path = memory.save(tmp_path / "m.json")
    loaded = TranslationMemory.load(path)
    assert loaded.lookup_batch(queries) == memory.lookup_batch(queries)
    assert loaded.leave_one_out() == memory.leave_one_out()
    assert loaded.encoder_input("Save") == "Save|Enregistrer" and len(loaded) == len(en)
    with pytest.raises(ModelLoadError, match=r"not found: pass the memory file saved"):
        TranslationMemory.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    for content, message in [
        (path.read_bytes()[:100], "is not a saved memory"),
        (b"\xff\xfe", "is not a saved memory"),
        (b"[1, 2]", "expected format 'edgeseq.translation-memory/1', got 'list'"),
        (b'{"format": "other"}', "expected format 'edgeseq.translation-memory/1', got 'other'"),
        (path.read_text().replace('"outputs"', '"x"').encode(), r"is corrupt \(KeyError"),
        (path.read_text().replace('"Save"', "3", 1).encode(), "corrupt.*sources must be str"),
    ]:
        bad.write_bytes(content)
        with pytest.raises(ModelLoadError, match=message):
            TranslationMemory.load(bad)


def test_bad_arguments_are_refused() -> None:
    for args, kw, message in [
        ((["a", "b"], ["x"]), {}, "n >= 1 sources and n outputs; got 2 sources and 1 outputs"),
        (([], []), {}, "got 0 sources"),
        ((["a", 3], ["x", "y"]), {}, "memory sources must be str; got int 3"),
        ((["a"], ["x"]), {"candidates": 0}, "candidates must be >= 1; got 0"),
        ((["a"], ["x"]), {"candidates": 2.5}, "candidates must be a whole number"),
        ((["a"], ["x"]), {"separator": None}, "separator must be str"),
    ]:
        with pytest.raises(InputError, match=message):
            TranslationMemory(*args, **kw)
    one = TranslationMemory(["a"], [["x", "y"]])
    with pytest.raises(InputError, match="leave-one-out needs a memory of at least two"):
        one.leave_one_out()
    with pytest.raises(InputError, match="a memory query must be str; got bytes"):
        one.lookup(b"a")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="encoder_input joins text; this memory's outputs"):
        one.encoder_input("a")
    assert one.lookup("zzz") == ["x", "y"]  # nothing shared: the only pair, cosine 0
    with pytest.raises(InputError, match="must be JSON values to save"):
        TranslationMemory(["a"], [object()]).save(Path(os.devnull))


SOURCES = ["Open the file", "Save the file", "Close the window", "Delete this item"]
OUTPUTS = ["Ouvrir le fichier", "Enregistrer le fichier", "Fermer la fenêtre", "Supprimer"]


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny attention pair whose encoder reads English + U+001E + the memory's French
    (untrained, seeded), exported, and its memory saved beside it."""
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.data import Vocabulary
    from edgeseq.train.models import Seq2Seq, SeqConfig

    out = tmp_path_factory.mktemp("tm")
    torch.manual_seed(3)
    src = Vocabulary.from_text("".join(SOURCES + OUTPUTS) + SEP + "saving")
    tgt = Vocabulary.from_text("".join(OUTPUTS))
    enc = SeqConfig(cell="gru", input_size=8, hidden_size=8, output_size=len(src),
                    vocab_size=len(src))  # fmt: skip
    dec = SeqConfig(cell="gru", input_size=8, hidden_size=8, output_size=len(tgt),
                    vocab_size=len(tgt))  # fmt: skip
    model = Seq2Seq(enc, dec, attention="general").eval()
    export_model(
        model,
        out / "translate.onnx",
        preprocessing=Preprocessing(vocab=tgt.to_list()),
        source_preprocessing=Preprocessing(vocab=src.to_list()),
        max_source=60,
    )
    TranslationMemory(SOURCES, OUTPUTS).save(out / "translate.memory.json")
    return out / "translate.onnx", out / "translate.memory.json"


DEVICE = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "onnx", "sklearn", "scipy"}:
            raise ImportError(f"{name} is not on the device")
sys.meta_path.insert(0, Block())
from edgeseq.runtime import EncoderDecoder, TranslationMemory
memory = TranslationMemory.load(sys.argv[2])
pair = EncoderDecoder(sys.argv[1], threads=1)
text = memory.encoder_input(sys.argv[3])
print(json.dumps([text, "".join(pair.generate(text, 12, temperature=0))]))
"""


def test_device_translates_with_the_memory_without_torch_or_sklearn(translator) -> None:
    model, memory_file = translator
    memory = TranslationMemory(SOURCES, OUTPUTS)
    text = memory.encoder_input("saving the file")
    assert text == f"saving the file{SEP}Enregistrer le fichier"
    expected = "".join(EncoderDecoder(model, threads=1).generate(text, 12, temperature=0))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", DEVICE, str(model), str(memory_file), "saving the file"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [text, expected]
    # the CLI joins the same way: --memory FILE
    args = ["generate", str(model), "--source", "saving the file", "-t", "0", "-n", "12"]
    res = CliRunner().invoke(main, [*args, "--memory", str(memory_file)])
    assert res.exit_code == 0, res.output
    assert res.output == expected + "\n"


def test_cli_memory_refusals(translator, tmp_path: Path) -> None:
    model, memory_file = translator
    run = CliRunner().invoke
    res = run(main, ["generate", str(model), "--memory", str(memory_file)])
    assert res.exit_code == 2 and "--memory recalls an output for --source" in res.output
    res = run(main, ["generate", str(model), "--source", "x", "--memory", str(tmp_path / "no")])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: translation memory") and "not found" in res.output
    assert len(res.output.strip().splitlines()) == 1
    from _models import zoo

    res = run(main, ["generate", str(zoo.get("char_lm")), "--memory", str(memory_file),
                     "--source", "x"])  # fmt: skip
    assert res.exit_code == 2 and "--source is for encoder-decoder models" in res.output
