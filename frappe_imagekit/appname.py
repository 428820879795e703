"""An app's name, read from its repository as bench reads it (pure functions; no git here).

bench names an app by its own package, not by its repository: ``bench get-app`` clones into
``apps/<repository name>``, then ``get_app_name`` (frappe/bench ``bench/utils/app.py``) reads
``[project] name`` from ``pyproject.toml``, else ``[metadata] name`` from ``setup.cfg``, else
the first ``name = "..."`` of ``setup.py``, and renames the folder to that name
(``resilient-tech/india-compliance`` becomes ``apps/india_compliance``). imagekit reads the same
files at the resolved commit (``gitremote.read_app_files``, during pin resolution) and names the
app the same way; a repository with none of them is named by its single top-level package
folder holding ``hooks.py`` (what Frappe imports), else by its URL name.

The files are remote content: the name they give passes ``validate.app_name`` (a lower-case
Python identifier of at most 64 characters) before it reaches a Containerfile, a path, git or a
shell; a refusal is one sentence naming the repository, the file and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from frappe_imagekit import validate
from frappe_imagekit.errors import ConfigError

# The folder Frappe imports must hold hooks.py (the files bench reads: gitremote.APP_FILES).
HOOKS = "hooks.py"
# bench's own fallback pattern for setup.py (get_app_name): the first match, greedy to the last quote.
_SETUP_PY_NAME = re.compile(r"name\s*=\s*['\"](.*)['\"]")


@dataclass(frozen=True)
class NameSource:
    """Where a name came from: ``what`` is shown in messages (``pyproject.toml [project] name``)."""

    name: str
    what: str


class UnreadableFile(Exception):
    """A file bench would fail on (not TOML, not INI): ``str`` is the phrase for the message."""


def repo_name(url: str) -> str:
    """The last part of the URL's path without ``.git``: the repository's name, for display."""
    path = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    name = path.rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".git") else name


def declared_name(files: Mapping[str, str]) -> NameSource | None:
    """The name bench's ``get_app_name`` reads from these files, or None when none declares one."""
    if (text := files.get("pyproject.toml")) is not None:
        name = _pyproject_name(text)
        if name is not None:
            return NameSource(name, "pyproject.toml [project] name")
    if (text := files.get("setup.cfg")) is not None:
        name = _setup_cfg_name(text)
        if name:
            return NameSource(name, "setup.cfg [metadata] name")
    if (text := files.get("setup.py")) is not None and (match := _SETUP_PY_NAME.search(text)):
        return NameSource(match.group(1), "setup.py name=")
    return None


def _pyproject_name(text: str) -> str | None:
    # tomllib and configparser are imported where they are used: 2.5 ms at every start-up of
    # `imagekit check --help` otherwise (benchmarks/startup).
    import tomllib

    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise UnreadableFile("pyproject.toml is not valid TOML") from exc
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    if name is not None and not isinstance(name, str):
        raise UnreadableFile("the [project] name of its pyproject.toml is not a string")
    return name or None


def _setup_cfg_name(text: str) -> str | None:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise UnreadableFile("setup.cfg is not a valid INI file") from exc
    return parser.get("metadata", "name", fallback=None)


def app_name_from(files: Mapping[str, str], hooks_folders: Sequence[str], url: str, ref: str) -> NameSource:
    """The checked name of the app at ``url``/``ref``, whose top-level ``files`` (of
    ``gitremote.APP_FILES``) and package folders holding ``hooks.py`` were read; ``ConfigError`` else."""
    where = f"{repo_name(url) or 'the repository'} at {ref}"
    try:
        source = declared_name(files)
    except UnreadableFile as exc:
        raise ConfigError(f"{where}: {exc}, so bench cannot install it: fix the file in the app.") from None
    if source is None and len(hooks_folders) == 1:
        source = NameSource(hooks_folders[0], f"package folder holding {HOOKS}")
    if source is None:
        source = NameSource(repo_name(url), "URL (no pyproject.toml, setup.cfg or setup.py name)")
    return NameSource(checked_name(source, where), source.what)


def checked_name(source: NameSource, where: str) -> str:
    """``source.name`` if it is a Python package name imagekit can build, else ``ConfigError``."""
    return validate.app_name(
        source.name,
        f"the app name of {where} (its {source.what})",
        fix=(
            "bench names an app by its package, so give the app a lower-case Python name in its "
            'pyproject.toml ([project] name = "my_app", with the package folder my_app/ holding hooks.py)'
        ),
    )
