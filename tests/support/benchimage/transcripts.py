"""The real Frappe v15 transcripts in ``shared/reference/frappe-v15`` (read-only test data).

In CI a copy of ``shared/`` sits beside the clone (``<repo>/../shared``); in a git worktree it is
further up. ``reference_dir()`` returns the first ancestor's copy, or None when there is none
(tests then fail loudly rather than skip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SUBDIR = Path("shared") / "reference" / "frappe-v15"
MIGRATE_COMMANDS = (" migrate", " run-patch ")


def reference_dir() -> Path | None:
    for base in ROOT.parents:
        if (base / SUBDIR).is_dir():
            return base / SUBDIR
    return None


@dataclass(frozen=True)
class Transcript:
    name: str
    text_bytes: bytes
    meta: dict[str, Any]

    @property
    def text(self) -> str:
        return self.text_bytes.decode("utf-8", "replace")

    @property
    def truth(self) -> dict[str, Any]:
        return self.meta["truth"]

    @property
    def exit_code(self) -> int:
        return int(self.meta["exit_code"])


def load(name: str) -> Transcript:
    folder = reference_dir()
    if folder is None:
        raise FileNotFoundError(f"{SUBDIR} not found above {ROOT}: the real transcripts are missing")
    return Transcript(
        name, (folder / f"{name}.txt").read_bytes(), json.loads((folder / f"{name}.json").read_text())
    )


def migrate_transcripts() -> list[str]:
    """Names of the transcripts of ``bench ... migrate`` and ``run-patch`` runs."""
    folder = reference_dir()
    if folder is None:
        return []
    names = []
    for meta_file in sorted(folder.glob("*.json")):
        command = json.loads(meta_file.read_text()).get("command", "")
        if any(word in command + " " for word in MIGRATE_COMMANDS):
            names.append(meta_file.stem)
    return names
