"""The scripts a Containerfile writes with ``printf '%s\\n' 'line' ... > PATH`` in a RUN, read
back as sh would write them (the words are split with POSIX shell rules)."""

from __future__ import annotations

import shlex

from frappe_imagekit.build.containerfile import parse_containerfile


def printed_script(containerfile_text: str, path: str) -> str:
    """The text the RUN writes to ``path`` (``KeyError`` when no RUN writes it)."""
    for ins in parse_containerfile(containerfile_text).instructions:
        if ins.keyword != "RUN":
            continue
        words = shlex.split(ins.command, posix=True)
        for i, word in enumerate(words[:-1]):
            if word == ">" and words[i + 1] == path:
                start = max(j for j in range(i) if words[j] == "printf") + 2
                return "".join(line + "\n" for line in words[start:i])
    raise KeyError(path)
