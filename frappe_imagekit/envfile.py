"""`.env` parsing and validation against the annotated example (`de-example.env`).

The example is the schema: every key in it must be in `.env`. Comment lines directly above a key
(no blank line between) describe it::

    # Version tag of the image; a new one for every build.
    # @required
    # @pattern ^v\\d+\\.\\d+\\.\\d+$
    DE_SITE_VERSION=v1.0.0

Annotations: ``@required`` (non-empty), ``@secret`` (masked everywhere, never stored; implies
required and must differ from the example's placeholder), ``@pattern REGEX`` (full match),
``@choices a|b|c`` (allowed values), ``@description TEXT``; other comment lines are the description too.
"""

from __future__ import annotations

import functools
import io
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frappe_imagekit import validate
from frappe_imagekit.errors import ConfigError

# no lazy ``(.*?)\s*$``: quadratic on a long line with inner spaces (the caller strips group 2)
_ANNOTATION = re.compile(r"^#\s*@(\w+)(.*)$")
_KNOWN_ANNOTATIONS = {"required", "secret", "pattern", "choices", "description"}
PLACEHOLDER_HINTS = (
    "changeme",
    "change_me",
    "your_",
    "your-",
    "<",
    "xxx",
    "placeholder",
    "replace",
)


@dataclass
class KeySpec:
    """What the example says about one key."""

    name: str
    line: int
    example_value: str = ""
    required: bool = False
    secret: bool = False
    pattern: str | None = None
    choices: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def example_line(self) -> str:
        hidden = self.secret or _TOKEN_SHAPE.search(self.example_value) is not None
        return f"{shown_key(self.name)}={'<secret>' if hidden else self.example_value}"


@dataclass(frozen=True)
class Finding:
    """One thing check found (in .env, de-example.env, apps.json or a remote): the one finding
    type of envfile, appsjson and check."""

    level: str  # "error" | "warning"
    code: str
    message: str


@dataclass
class ParsedEnv:
    values: dict[str, str]
    lines: dict[str, int]
    issues: list[Finding]


MAX_FILE_BYTES = 1024 * 1024  # a .env, de-example.env or apps.json is a few KB


def read_text(path: Path, what: str, root: Path | None = None) -> str:
    """The text of a workspace file, refusing what could make imagekit print another file.

    A symbolic link is followed only when it stays inside the workspace (``root``, default the
    file's folder): a ``.env`` linked to ``~/.ssh/id_ed25519`` would otherwise have that file's
    lines echoed as syntax errors. Only regular files up to ``MAX_FILE_BYTES`` are read (a FIFO
    would hang, ``/dev/zero`` would never end).
    """
    root = (root or path.parent).resolve()
    try:
        target = path.resolve(strict=True)
        info = target.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found at {path}: {_missing_hint(path)}") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ConfigError(f"{what} at {path} cannot be read ({_reason(exc)}): fix it.") from None
    if path.is_symlink() and not target.is_relative_to(root):
        raise ConfigError(
            f"{what} at {path} is a symbolic link to a file outside the workspace: imagekit does not "
            "follow it (it could expose another file); copy the file into the workspace instead."
        )
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{what} at {path} is not a regular file of at most {MAX_FILE_BYTES // 1024} KB: "
            "replace it with the real file."
        )
    try:
        return target.read_bytes()[: MAX_FILE_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} at {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} at {path} cannot be read ({_reason(exc)}): fix its permissions.") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def _missing_hint(path: Path) -> str:
    if path.name == ".env":
        return "copy de-example.env to .env and fill it in."
    if path.name == "apps.json":
        return "copy apps.example.json to apps.json and list your apps."
    return "create it, or pick another workspace with -w."


def parse_env_text(text: str, filename: str = ".env") -> ParsedEnv:
    """Parse .env text with python-dotenv's parser, keeping line numbers and parse errors."""
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    issues: list[Finding] = []
    for binding in parse_stream(io.StringIO(text)):
        line = _real_line(binding.original.line, binding.original.string)
        if binding.error:
            issues.append(
                Finding("error", "env-syntax", _syntax_message(filename, line, binding.original.string))
            )
            continue
        if binding.key is None:
            continue
        if binding.key in values:
            issues.append(
                Finding(
                    "warning",
                    "env-duplicate",
                    (
                        f"{filename} sets {shown_key(binding.key)} twice (lines {lines[binding.key]} and "
                        f"{line}); the last one wins: remove the other."
                    ),
                )
            )
        values[binding.key] = binding.value or ""
        lines[binding.key] = line
    return ParsedEnv(values, lines, issues)


_LINE_KEY = re.compile(r"\s*(?:export\s+)?([^=#\s'\"]+)\s*=")
_PLAIN_KEY = re.compile(r"[A-Z_][A-Z0-9_]{0,63}|[a-z_][a-z0-9_]{0,63}")
_TOKEN_SHAPE = re.compile("|".join(map(re.escape, validate.TOKEN_PREFIXES)), re.IGNORECASE)  # also in values


def shown_key(key: str) -> str:
    """A key as messages may name it: a plain variable name; anything else (a line of a key
    file, a token pasted as a key) is described, never echoed."""
    if _PLAIN_KEY.fullmatch(key) and not _TOKEN_SHAPE.match(key):
        return key
    return "a key that is not a plain variable name (not shown)"


def _syntax_message(filename: str, line: int, original: str) -> str:
    """Line number and key of a line that is not KEY=VALUE; never its value (it may be a token
    with an unclosed quote) and never a line that has no key (it may be another file's)."""
    match = _LINE_KEY.match(original.lstrip("\n"))
    key = f" ({shown_key(match.group(1))})" if match else ""
    return (
        f"{filename} line {line}{key} is not KEY=VALUE (an unclosed quote or a stray line?): "
        "fix or remove that line."
    )


def _real_line(line: int, original: str) -> int:
    # python-dotenv folds blank lines before a binding into it; count them off.
    return line + len(original) - len(original.lstrip("\n"))


def parse_example_text(text: str) -> dict[str, KeySpec]:
    """Read the example: each key with the annotations in the comment block directly above it."""
    from dotenv.parser import parse_stream

    specs: dict[str, KeySpec] = {}
    block: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        if original.startswith("\n"):
            block = []  # a blank line ends a comment block
        if binding.key is None:
            stripped = original.strip()
            if stripped.startswith("#"):
                block.append(stripped)
            elif not stripped:
                block = []
            continue
        spec = KeySpec(binding.key, _real_line(binding.original.line, original), binding.value or "")
        _apply_annotations(spec, block)
        if (earlier := specs.get(spec.name)) is not None:  # declared twice: never un-secret a key
            spec.secret = spec.secret or earlier.secret
            spec.required = spec.required or earlier.required
        specs[spec.name] = spec
        block = []
    return specs


def _apply_annotations(spec: KeySpec, block: list[str]) -> None:
    description: list[str] = []
    for comment in block:
        match = _ANNOTATION.match(comment)
        if not match:
            description.append(comment.lstrip("#").strip())
            continue
        name, arg = match.group(1).lower(), match.group(2).strip()
        if name == "required":
            spec.required = True
        elif name == "secret":
            spec.secret = spec.required = True
        elif name == "pattern":
            spec.pattern = arg
        elif name == "choices":
            spec.choices = [c.strip() for c in re.split(r"[|,]", arg) if c.strip()]
        elif name == "description":
            description.append(arg)
        # unknown annotations are reported by check_example()
    spec.description = " ".join(d for d in description if d)


def example_annotation_issues(text: str) -> list[Finding]:
    """Annotations the example uses that imagekit does not know, and invalid patterns."""
    issues = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _ANNOTATION.match(line.strip())
        if match and match.group(1).lower() not in _KNOWN_ANNOTATIONS:
            issues.append(
                Finding(
                    "warning",
                    "example-annotation",
                    (
                        f"de-example.env line {number}: unknown annotation @{match.group(1)}; "
                        f"known ones are {', '.join('@' + a for a in sorted(_KNOWN_ANNOTATIONS))}."
                    ),
                )
            )
        elif match and match.group(1).lower() == "pattern":
            problem = pattern_problem(match.group(2))
            if problem:
                issues.append(
                    Finding(
                        "error",
                        "example-pattern",
                        (
                            f"de-example.env line {number}: @pattern is not a valid RE2 regular expression "
                            f"({problem}; lookarounds and backreferences are not supported): fix it."
                        ),
                    )
                )
    return issues


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> tuple[Any, str | None]:
    """(compiled pattern, None) or (None, why it is invalid). RE2 runs in linear time: a pattern
    from the repository (``^(\\w+)+!$``) cannot make check hang."""
    import re2  # lazy: a compiled extension `imagekit --help` does not need

    options = re2.Options()
    options.log_errors = False  # RE2 would print the pattern to stderr itself
    try:
        return re2.compile(pattern, options), None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return None, text.split(":", 1)[0].strip() or "invalid"
    except (TypeError, ValueError) as exc:  # a NUL byte, an unencodable character
        return None, type(exc).__name__


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used, or None."""
    return _compiled(pattern)[1]


def pattern_matches(pattern: str, value: str) -> bool | None:
    """Whether ``value`` fully matches ``pattern``; None when the pattern is invalid (reported
    once, by ``example_annotation_issues``)."""
    compiled, _problem = _compiled(pattern)
    if compiled is None:
        return None
    return compiled.fullmatch(value) is not None


def validate_env(env: ParsedEnv, specs: dict[str, KeySpec]) -> list[Finding]:
    """Every example key present and valid; extra keys are schema drift."""
    issues: list[Finding] = []
    for spec in specs.values():
        if spec.name not in env.values:
            issues.append(
                Finding(
                    "error",
                    "env-missing",
                    (
                        f".env has no {spec.name} (de-example.env line {spec.line}: {spec.example_line})"
                        f"{_described(spec)}: add it to .env."
                    ),
                )
            )
            continue
        issues.extend(_value_issues(spec, env.values[spec.name]))
    for key in env.values:
        if key not in specs:
            issues.append(
                Finding(
                    "warning",
                    "env-drift",
                    (
                        f".env has {shown_key(key)} (line {env.lines[key]}) but de-example.env does not: "
                        "schema drift, the example may be out of date; add it there or remove it here."
                    ),
                )
            )
    return issues


def _described(spec: KeySpec) -> str:
    return f" - {spec.description.rstrip('.')}" if spec.description else ""


def _value_issues(spec: KeySpec, value: str) -> list[Finding]:
    def error(code: str, text: str) -> list[Finding]:
        return [Finding("error", code, f".env {spec.name} {text}{_described(spec)}.")]

    if not value:
        if spec.required:
            return error("env-empty", "is empty: set it")
        return []
    if spec.secret and (value == spec.example_value or looks_like_placeholder(value)):
        return error("env-placeholder", "is still the example's placeholder: put your real token there")
    if spec.pattern and pattern_matches(spec.pattern, value) is False:
        shown = "(secret value hidden)" if spec.secret else repr(value)
        return error("env-pattern", f"is {shown}, which does not match {spec.pattern}: correct it")
    if spec.choices and value not in spec.choices:
        shown = "(secret value hidden)" if spec.secret else repr(value)
        # the choices come from a repository file: one shaped like a token is not repeated
        allowed = ", ".join("(a token-shaped choice)" if _TOKEN_SHAPE.search(c) else c for c in spec.choices)
        return error("env-choice", f"is {shown}; allowed: {allowed}: pick one")
    return []


def looks_like_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(hint in lowered for hint in PLACEHOLDER_HINTS) or bool(re.fullmatch(r"\$\{\w+\}", value))
