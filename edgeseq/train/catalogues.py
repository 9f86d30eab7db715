"""English → other-language pairs from gettext catalogues that ship inside packages.

Programs translated with gettext install a compiled catalogue (``.mo``) per language:
every English message with its human translation. Two sources are read here:

- the PyPI package ``Django`` (``django/**/locale/<lang>/LC_MESSAGES/*.mo``, BSD-3-Clause);
- Debian's ``/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo``, one per program
  (:data:`DEBIAN_DOMAINS`: the essential and standard tools every Debian system has,
  plus a few developer tools that ``.ci/run`` installs). Each catalogue carries its
  package's licence (GPL-2+/GPL-3+ for most, LGPL-2.1+ for glibc and systemd; see
  ``/usr/share/doc/<package>/copyright``).

Only the standard library is imported.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterable
from pathlib import Path

from edgeseq.errors import InputError

__all__ = ["DEBIAN_DOMAINS", "load_catalogue", "load_debian_pairs", "merge_pairs"]

# gettext domain -> Debian package that installs it (priority in brackets)
DEBIAN_DOMAINS: dict[str, str] = {
    "coreutils": "coreutils",  # [required, essential]
    "dpkg": "dpkg",
    "shadow": "login",
    "bash": "bash",
    "tar": "tar",
    "diffutils": "diffutils",
    "findutils": "findutils",
    "sed": "sed",
    "grep": "grep",
    "apt": "apt",  # [required]
    "libapt-pkg6.0": "libapt-pkg6.0",
    "Linux-PAM": "libpam-runtime",
    "procps-ng": "procps",  # [important]
    "net-tools": "net-tools",
    "man-db": "man-db",
    "adduser": "adduser",
    "systemd": "systemd",
    "libc": "libc-l10n",  # [standard]
    "wget": "wget",
    "xz": "xz-utils",
    "git": "git",  # developer tools, installed by .ci/run
    "binutils": "binutils-common",
    "bfd": "binutils-common",
    "gas": "binutils-common",
    "ld": "binutils-common",
    "gold": "binutils-common",
    "opcodes": "binutils-common",
    "gprof": "binutils-common",
    "make": "make",
    "gettext-tools": "gettext",
    "gnupg2": "gnupg-l10n",
    "dpkg-dev": "libdpkg-perl",
}


def load_catalogue(path: str | Path) -> list[tuple[str, str]]:
    """The ``(english, translation)`` pairs of one ``.mo`` file, in catalogue order.

    Plural forms, entries with a message context, the header and empty translations
    are skipped; placeholders (``%s``, ``%(name)s``, ``{}``) are left as they are.
    """
    with open(path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    return [
        (key, value)
        for key, value in catalog.items()
        if isinstance(key, str) and key and "\x04" not in key and value
    ]


def merge_pairs(groups: Iterable[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """Pairs of several catalogues; a repeated English string keeps its first translation."""
    pairs: dict[str, str] = {}
    for group in groups:
        for key, value in group:
            pairs.setdefault(key, value)
    return list(pairs.items())


def load_debian_pairs(
    lang: str = "fr",
    domains: Iterable[str] | None = None,
    root: str | Path = "/usr/share/locale",
) -> dict[str, list[tuple[str, str]]]:
    """Debian's catalogues for ``lang``: ``{domain: pairs}`` for each of ``domains``
    (default :data:`DEBIAN_DOMAINS`) that is installed; missing ones are left out.

    Raises
    ------
    InputError
        None of the catalogues is installed (e.g. a container built without locales).
    """
    wanted = list(DEBIAN_DOMAINS if domains is None else domains)
    folder = Path(root) / lang / "LC_MESSAGES"
    found = {
        d: load_catalogue(folder / f"{d}.mo") for d in wanted if (folder / f"{d}.mo").is_file()
    }
    if not found:
        raise InputError(
            f"none of the catalogues {wanted[:4]}... is installed under {folder}; install "
            "the packages of DEBIAN_DOMAINS (see .ci/run), or check that dpkg does not "
            "exclude /usr/share/locale (path-exclude in /etc/dpkg/dpkg.cfg.d/)."
        )
    return found
