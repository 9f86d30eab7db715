"""gettext catalogues as translation pairs: .mo parsing, merging, Debian's layout."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from edgeseq.errors import InputError
from edgeseq.train.catalogues import load_catalogue, load_debian_pairs, merge_pairs


def write_mo(path: Path, entries: dict[str, str]) -> Path:
    """A GNU .mo file (little-endian, no hash table) holding ``entries``."""
    keys = sorted(entries)
    ids = [k.encode() for k in keys]
    strs = [entries[k].encode() for k in keys]
    n = len(keys)
    header = 7 * 4
    o_table, t_table = header, header + 8 * n
    data_at = t_table + 8 * n
    blob, o_pairs, t_pairs = b"", [], []
    for group, pairs in ((ids, o_pairs), (strs, t_pairs)):
        for s in group:
            pairs.append((len(s), data_at + len(blob)))
            blob += s + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, n, o_table, t_table, 0, data_at)
    for length, offset in o_pairs + t_pairs:
        out += struct.pack("<2I", length, offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out + blob)
    return path


def test_catalogue_pairs_skip_header_context_and_plurals(tmp_path: Path) -> None:
    header = "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n > 1);\n"
    mo = write_mo(
        tmp_path / "a.mo",
        {
            "": header,
            "cannot open %s": "impossible d'ouvrir %s",
            "menu\x04File": "Fichier",  # with a message context
            "%d file\x00%d files": "%d fichier\x00%d fichiers",  # plural forms
            "untranslated": "",
        },
    )
    assert load_catalogue(mo) == [("cannot open %s", "impossible d'ouvrir %s")]


def test_debian_layout_merge_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "fr" / "LC_MESSAGES"
    head = {"": "Content-Type: text/plain; charset=UTF-8\n"}
    write_mo(folder / "tar.mo", {**head, "Stop": "Arrêter", "Quit": "Quitter"})
    write_mo(folder / "sed.mo", {**head, "Stop": "Arrêt", "Go": "Aller"})
    found = load_debian_pairs("fr", ["tar", "sed", "absent"], root=tmp_path)
    assert sorted(found) == ["sed", "tar"]
    merged = dict(merge_pairs([found["tar"], found["sed"]]))
    assert merged == {"Quit": "Quitter", "Stop": "Arrêter", "Go": "Aller"}  # first one wins
    with pytest.raises(InputError, match="none of the catalogues"):
        load_debian_pairs("de", ["tar"], root=tmp_path)
