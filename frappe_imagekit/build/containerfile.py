"""Read a Containerfile/Dockerfile: its stages, declared ARGs, and how it reads apps.json.

Two generations of Frappe Containerfiles exist (FACTS.md):

- current upstream mounts apps.json as a BuildKit secret
  (``RUN --mount=type=secret,id=apps_json,target=/opt/frappe/apps.json ...``): ``SECRET``;
- older ones (and many private forks) declare ``ARG APPS_JSON_BASE64`` and decode it in a RUN,
  which writes the token into image history: ``BUILD_ARG``.

A file with neither never reads apps.json (``apps_json_mode`` is None). When both are present the
secret wins. The parser knows what the build needs and no more: line continuations (with the
``# escape=`` directive), comments, case-insensitive instructions, ``FROM ... AS name`` stages,
``ARG`` lists with quoted defaults, ``RUN --flag`` options, and heredocs (skipped as RUN bodies).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

BASE64_ARG = "APPS_JSON_BASE64"
SECRET_ID = "apps_json"

# no lazy ``(.+?)\s*$``: quadratic on a long line with inner spaces (the value is stripped)
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=(.*\S)")
_HEREDOC = re.compile(r"<<-?\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1")


class AppsJsonMode(StrEnum):
    SECRET = "secret"
    BUILD_ARG = "build-arg"


@dataclass(frozen=True)
class Instruction:
    """One instruction after joining continuations: ``RUN`` + its text, on 1-based ``line``."""

    keyword: str  # upper case
    value: str  # everything after the keyword, continuations joined with a space
    line: int
    stage: int  # index into Containerfile.stages; -1 before the first FROM

    @property
    def flags(self) -> dict[str, list[str]]:
        """Leading ``--name=value`` options (``RUN --mount=...``), by name."""
        return _leading_flags(self.value)[0]

    @property
    def command(self) -> str:
        """The value without its leading ``--`` options."""
        return _leading_flags(self.value)[1]


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    line: int
    args: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretMount:
    id: str
    target: str
    options: dict[str, str]
    line: int


@dataclass
class Containerfile:
    """What imagekit knows about a Containerfile."""

    path: Path | None
    text: str
    sha256: str
    declared_args: dict[str, str | None]  # ARG name -> default (global and every stage)
    apps_json_mode: AppsJsonMode | None
    secret_id: str | None  # the BuildKit secret id apps.json is mounted from (SECRET mode)
    secret_target: str | None = None  # where the secret is mounted inside the build
    global_args: dict[str, str | None] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)
    secret_mounts: list[SecretMount] = field(default_factory=list)

    @property
    def final_stage(self) -> Stage | None:
        return self.stages[-1] if self.stages else None

    def stage_instructions(self, stage: Stage | int) -> list[Instruction]:
        index = stage.index if isinstance(stage, Stage) else stage
        return [ins for ins in self.instructions if ins.stage == index]

    def declares(self, name: str) -> bool:
        return name in self.declared_args


def parse_containerfile(text: str, path: Path | None = None) -> Containerfile:
    """Parse ``text`` (the content of ``path``, if it came from a file)."""
    instructions = _instructions(text)
    stages, global_args, declared = _stages_and_args(instructions)
    mounts = [m for ins in instructions if ins.keyword == "RUN" for m in _secret_mounts(ins)]
    # An exact id wins over a mount recognised only by its target file name.
    candidates = sorted((m for m in mounts if _is_apps_json(m)), key=lambda m: m.id != SECRET_ID)
    apps_mount = candidates[0] if candidates else None
    if apps_mount is not None:
        mode: AppsJsonMode | None = AppsJsonMode.SECRET
    elif BASE64_ARG in declared:
        mode = AppsJsonMode.BUILD_ARG
    else:
        mode = None
    # hashlib loads OpenSSL: 3 ms at every start-up of `imagekit check --help` if imported at the
    # top (benchmarks/startup); check parses the Containerfile only when it runs.
    import hashlib

    return Containerfile(
        path=path,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        declared_args=declared,
        apps_json_mode=mode,
        secret_id=apps_mount.id if apps_mount else None,
        secret_target=apps_mount.target if apps_mount else None,
        global_args=global_args,
        stages=stages,
        instructions=instructions,
        secret_mounts=mounts,
    )


def read_containerfile(path: Path) -> Containerfile:
    """Parse the file at ``path``."""
    return parse_containerfile(Path(path).read_text(encoding="utf-8"), Path(path))


def default_containerfile() -> Path:
    """The production Containerfile shipped inside the package, in ``frappe_imagekit/containerfiles/``
    (package data, see pyproject.toml; containerfiles/README.md)."""
    return Path(__file__).resolve().parent.parent / "containerfiles" / "Containerfile"


# --- lines -> instructions -------------------------------------------------------------


def _escape_char(lines: list[str]) -> str:
    """The ``# escape=`` parser directive, read only from the leading directive lines."""
    for line in lines:
        match = _DIRECTIVE.match(line.strip())
        if not match:
            break
        value = match.group(2).strip()
        if match.group(1).lower() == "escape" and value in ("\\", "`"):
            return value
    return "\\"


def _instructions(text: str) -> list[Instruction]:
    lines = text.splitlines()
    escape = _escape_char(lines)
    found: list[Instruction] = []
    stage = -1
    i = 0
    while i < len(lines):
        start = i
        parts, i = _logical_line(lines, i, escape)
        logical = " ".join(p for p in parts if p).strip()
        if not logical:
            continue
        keyword, _, value = logical.partition(" ")
        keyword = keyword.upper()
        value = value.strip()
        if keyword == "FROM":
            stage += 1
        if keyword == "RUN":
            i = _skip_heredocs(lines, i, value)
        found.append(Instruction(keyword, value, start + 1, stage))
    return found


def _logical_line(lines: list[str], i: int, escape: str) -> tuple[list[str], int]:
    """Join one instruction's physical lines; comment and blank lines inside are dropped."""
    parts: list[str] = []
    while i < len(lines):
        raw = lines[i]
        i += 1
        stripped = raw.strip()
        if stripped.startswith("#"):
            if parts:
                continue  # a comment inside a continued instruction is removed
            return [], i
        if not stripped and parts:
            continue  # an empty continuation line (deprecated but accepted)
        body = raw.rstrip()
        if body.endswith(escape):
            parts.append(body[: -len(escape)].strip())
            continue
        parts.append(body.strip())
        return parts, i
    return parts, i


def _skip_heredocs(lines: list[str], i: int, value: str) -> int:
    """Skip the bodies of ``<<EOF`` heredocs that follow a RUN line."""
    for match in _HEREDOC.finditer(value):
        word = match.group(2)
        while i < len(lines) and lines[i].strip() != word:
            i += 1
        i += 1
    return i


# --- stages and ARGs -------------------------------------------------------------------


def _stages_and_args(
    instructions: list[Instruction],
) -> tuple[list[Stage], dict[str, str | None], dict[str, str | None]]:
    stages: list[Stage] = []
    global_args: dict[str, str | None] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            base, name = _from_parts(ins.value)
            stages.append(Stage(len(stages), base, name, ins.line))
        elif ins.keyword == "ARG":
            target = stages[-1].args if stages else global_args
            target.update(_arg_pairs(ins.value))
    declared: dict[str, str | None] = dict(global_args)
    for stage in stages:
        for name, default in stage.args.items():
            if declared.get(name) is None:
                declared[name] = default
    return stages, global_args, declared


def _from_parts(value: str) -> tuple[str, str | None]:
    words = [w for w in value.split() if not w.startswith("--")]
    base = words[0] if words else ""
    if len(words) >= 3 and words[1].lower() == "as":
        return base, words[2]
    return base, None


def _arg_pairs(value: str) -> dict[str, str | None]:
    try:
        words = shlex.split(value, comments=False, posix=True)
    except ValueError:
        words = value.split()
    pairs: dict[str, str | None] = {}
    for word in words:
        name, sep, default = word.partition("=")
        if name:
            pairs[name] = default if sep else None
    return pairs


# --- RUN --mount -----------------------------------------------------------------------


def _leading_flags(value: str) -> tuple[dict[str, list[str]], str]:
    flags: dict[str, list[str]] = {}
    rest = value
    while rest.startswith("--"):
        word, _, tail = rest.partition(" ")
        name, _, flag_value = word[2:].partition("=")
        flags.setdefault(name.lower(), []).append(flag_value)
        rest = tail.lstrip()
    return flags, rest


def _csv_options(spec: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, val = item.strip().partition("=")
        if key:
            options[key.strip().lower()] = val.strip().strip("\"'") if sep else "true"
    return options


def _secret_mounts(ins: Instruction) -> list[SecretMount]:
    mounts = []
    for spec in ins.flags.get("mount", []):
        options = _csv_options(spec)
        if options.get("type") != "secret":
            continue
        target = options.get("target") or options.get("dst") or options.get("destination") or ""
        secret_id = options.get("id") or (Path(target).name if target else "")
        if not target:
            target = f"/run/secrets/{secret_id}"
        mounts.append(SecretMount(secret_id, target, options, ins.line))
    return mounts


def _is_apps_json(mount: SecretMount) -> bool:
    return mount.id == SECRET_ID or Path(mount.target).name == "apps.json"
