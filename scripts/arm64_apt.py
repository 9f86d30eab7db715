"""The host's Debian mirrors as one-line apt sources, for the private arm64 apt state.

Stdlib only; used by arm64_env.py.
"""

from __future__ import annotations

import re
from pathlib import Path


class Arm64SetupError(RuntimeError):
    """The emulated environment could not be set up (no qemu; apt, dpkg or pip failed)."""


def debian_sources() -> list[str]:
    """One-line `deb` entries for the Debian mirrors in the host's apt sources."""
    etc, entries = Path("/etc/apt"), []  # (uri, suites, components, signed-by)
    for f in filter(Path.exists, [etc / "sources.list", *(etc / "sources.list.d").glob("*.list")]):
        for m in re.finditer(
            r"^\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+([^#\n]+)", f.read_text(), re.M
        ):
            key = re.search(r"signed-by=(\S+?)\]?(\s|$)", m[1] or "")
            entries.append((m[2], [m[3]], m[4].split(), key and key[1]))
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text()):
            kv = {
                k.lower(): v.strip() for k, v in re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, re.M)
            }
            if "deb" in kv.get("types", "").split() and kv.get("enabled") != "no":
                entries += [
                    (
                        uri,
                        kv.get("suites", "").split(),
                        kv.get("components", "").split(),
                        kv.get("signed-by"),
                    )
                    for uri in kv.get("uris", "").split()
                ]
    lines = [
        f"deb {f'[signed-by={key}] ' if key and key.startswith('/') else ''}"
        f"{uri} {suite} {' '.join(comps)}"
        for uri, suites, comps, key in entries
        if "debian" in uri and comps
        for suite in suites
    ]
    if not lines:
        raise Arm64SetupError("no Debian mirror in /etc/apt/sources.list{,.d}")
    return lines
