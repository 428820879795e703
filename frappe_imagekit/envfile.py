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

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from frappe_imagekit.errors import ConfigError

_ANNOTATION = re.compile(r"^#\s*@(\w+)\s*(.*?)\s*$")
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
        return f"{self.name}={'<secret>' if self.secret else self.example_value}"


@dataclass
class EnvIssue:
    level: str  # "error" | "warning"
    code: str
    message: str


@dataclass
class ParsedEnv:
    values: dict[str, str]
    lines: dict[str, int]
    issues: list[EnvIssue]


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found at {path}: {_missing_hint(path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{what} at {path} cannot be read ({exc}): fix its permissions or encoding."
        ) from None


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
    issues: list[EnvIssue] = []
    for binding in parse_stream(io.StringIO(text)):
        line = _real_line(binding.original.line, binding.original.string)
        if binding.error:
            snippet = binding.original.string.strip().splitlines()[0][:60]
            issues.append(
                EnvIssue(
                    "error",
                    "env-syntax",
                    (f"{filename} line {line} is not KEY=VALUE ({snippet!r}): fix or remove that line."),
                )
            )
            continue
        if binding.key is None:
            continue
        if binding.key in values:
            issues.append(
                EnvIssue(
                    "warning",
                    "env-duplicate",
                    (
                        f"{filename} sets {binding.key} twice (lines {lines[binding.key]} and {line}); "
                        "the last one wins: remove the other."
                    ),
                )
            )
        values[binding.key] = binding.value or ""
        lines[binding.key] = line
    return ParsedEnv(values, lines, issues)


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
        name, arg = match.group(1).lower(), match.group(2)
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


def example_annotation_issues(text: str) -> list[EnvIssue]:
    """Annotations the example uses that imagekit does not know, and invalid patterns."""
    issues = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _ANNOTATION.match(line.strip())
        if match and match.group(1).lower() not in _KNOWN_ANNOTATIONS:
            issues.append(
                EnvIssue(
                    "warning",
                    "example-annotation",
                    (
                        f"de-example.env line {number}: unknown annotation @{match.group(1)}; "
                        f"known ones are {', '.join('@' + a for a in sorted(_KNOWN_ANNOTATIONS))}."
                    ),
                )
            )
        elif match and match.group(1).lower() == "pattern":
            try:
                re.compile(match.group(2))
            except re.error as exc:
                issues.append(
                    EnvIssue(
                        "error",
                        "example-pattern",
                        (f"de-example.env line {number}: @pattern is not a valid regex ({exc}): fix it."),
                    )
                )
    return issues


def validate_env(env: ParsedEnv, specs: dict[str, KeySpec]) -> list[EnvIssue]:
    """Every example key present and valid; extra keys are schema drift."""
    issues: list[EnvIssue] = []
    for spec in specs.values():
        if spec.name not in env.values:
            issues.append(
                EnvIssue(
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
                EnvIssue(
                    "warning",
                    "env-drift",
                    (
                        f".env has {key} (line {env.lines[key]}) but de-example.env does not: "
                        "schema drift, the example may be out of date; add it there or remove it here."
                    ),
                )
            )
    return issues


def _described(spec: KeySpec) -> str:
    return f" - {spec.description}" if spec.description else ""


def _value_issues(spec: KeySpec, value: str) -> list[EnvIssue]:
    def error(code: str, text: str) -> list[EnvIssue]:
        return [EnvIssue("error", code, f".env {spec.name} {text}{_described(spec)}.")]

    if not value:
        if spec.required:
            return error("env-empty", "is empty: set it")
        return []
    if spec.secret and (value == spec.example_value or looks_like_placeholder(value)):
        return error("env-placeholder", "is still the example's placeholder: put your real token there")
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        shown = "(secret value hidden)" if spec.secret else repr(value)
        return error("env-pattern", f"is {shown}, which does not match {spec.pattern}: correct it")
    if spec.choices and value not in spec.choices:
        return error("env-choice", f"is {value!r}; allowed: {', '.join(spec.choices)}: pick one")
    return []


def looks_like_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(hint in lowered for hint in PLACEHOLDER_HINTS) or bool(re.fullmatch(r"\$\{\w+\}", value))
