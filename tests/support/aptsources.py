"""The Debian mirror this machine's apt uses, read from its own apt sources.

No package registry's host name is written in the repository: the Debian 13 test host is
debootstrapped from, and installs its packages from, the mirror that this machine's
``/etc/apt/sources.list`` or ``/etc/apt/sources.list.d/*.{list,sources}`` names for its own
release (``VERSION_CODENAME`` of ``/etc/os-release``), and the security archive beside it.
Both formats are read: one-line (``deb [options] URI SUITE COMPONENT...``) and deb822 stanzas
(``Types:``, ``URIs:``, ``Suites:``, ``Components:``, ``Enabled: no``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_CODENAME = re.compile(r"^VERSION_CODENAME=\"?([a-z]+)\"?\s*$", re.MULTILINE)


class MirrorError(RuntimeError):
    """This machine's apt sources name no Debian mirror for its release; the message says why."""


@dataclass(frozen=True)
class Source:
    """One ``deb`` entry: where, which suites, which components."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


@dataclass(frozen=True)
class Mirrors:
    """The archive and (when the machine has one) the security archive, as URIs."""

    debian: str
    security: str | None


def parse_one_line(text: str) -> list[Source]:
    """The ``deb`` lines of a sources.list file (``deb-src`` and comments skipped)."""
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            sources.append(Source(words[0], (words[1],), tuple(words[2:])))
    return sources


def parse_deb822(text: str) -> list[Source]:
    """The ``deb`` stanzas of a ``.sources`` file (disabled ones skipped)."""
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and key:  # a continuation line
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        suites, components = (
            tuple(fields.get("suites", "").split()),
            tuple(fields.get("components", "").split()),
        )
        sources.extend(Source(uri, suites, components) for uri in fields.get("uris", "").split())
    return sources


def read_sources(root: Path = Path("/")) -> list[Source]:
    """Every ``deb`` entry of the machine under ``root``, in apt's reading order."""
    etc = root / "etc/apt"
    sources = parse_one_line(_read(etc / "sources.list"))
    folder = etc / "sources.list.d"
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.suffix == ".list":
            sources.extend(parse_one_line(_read(path)))
        elif path.suffix == ".sources":
            sources.extend(parse_deb822(_read(path)))
    return sources


def codename(root: Path = Path("/")) -> str:
    """The machine's Debian release name (``bookworm``), from ``/etc/os-release``."""
    match = _CODENAME.search(_read(root / "etc/os-release"))
    if not match:
        raise MirrorError(
            "/etc/os-release names no VERSION_CODENAME: the tests need a Debian machine's apt sources."
        )
    return match.group(1)


def find_mirrors(sources: list[Source], release: str) -> Mirrors:
    """The first source with ``release`` among its suites and ``main`` among its components, and
    the first with ``release-security`` (or the old ``release/updates``)."""
    debian = next((s.uri for s in sources if release in s.suites and "main" in s.components), None)
    if debian is None:
        raise MirrorError(
            f"this machine's apt sources name no Debian mirror for {release} main: "
            f"add its mirror to /etc/apt/sources.list.d, as apt itself needs."
        )
    names = (f"{release}-security", f"{release}/updates")
    security = next((s.uri for s in sources if set(names) & set(s.suites)), None)
    return Mirrors(debian.rstrip("/"), security.rstrip("/") if security else None)


def machine_mirrors(root: Path = Path("/")) -> Mirrors:
    """The mirrors of the machine under ``root``."""
    return find_mirrors(read_sources(root), codename(root))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return ""
