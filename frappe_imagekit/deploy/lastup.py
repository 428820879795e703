"""``last-up.json``: the compose files (kept copies, hashes), env file, variables and engine of
the last ``up``, read back so that ``down`` uses what ``up`` used."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

from frappe_imagekit import validate
from frappe_imagekit.deploy import (
    composeconfig,
)
from frappe_imagekit.deploy.compose import Container
from frappe_imagekit.deploy.context import Context, StatePaths, project_services
from frappe_imagekit.deploy.engine import DEFAULT_ENGINE, Stack, engine_name
from frappe_imagekit.deploy.record import now as now_iso
from frappe_imagekit.errors import (
    DeployError,
    ImagekitError,
)
from frappe_imagekit.runner import Runner, json_object


class KeptFile(TypedDict):
    """A compose file of the last up: its path, hash and the copy kept in the state folder."""

    path: str
    sha256: str
    copy: str


class LastUp(TypedDict, total=False):
    """``last-up.json`` as ``parse_last_up`` accepts it (``files`` entries are checked by
    ``recorded_files``; a record from before several files has none)."""

    config_files: str  # the files' paths joined by commas, as compose's config_files label
    sha256: str  # of the first file
    files: list[KeptFile]
    project_dir: str | None
    env_file: str | None
    env: dict[str, str]  # the variables the up ran with (the image variables)
    version: str
    when: str
    engine: str  # deploy/engine.py; missing: compose


@dataclass(frozen=True)
class DownFiles:
    """What ``down`` (and a rollback's up) uses: the kept copies of the last up's files, its
    project folder, env file and variables; without a last up, the containers' label."""

    files: list[str]
    project_dir: str | None
    env_file: str | None
    env: dict[str, str]
    kept: list[KeptFile]
    config_files: str

    def stack(self, project: str) -> Stack:
        return Stack(project, tuple(self.files), self.project_dir, self.env_file)


def files_for_down(ctx: Context, running: Sequence[Container]) -> DownFiles:
    """Which compose file (and env) ``down`` must use: the copy from the last ``up``."""
    recorded = read_last_up(ctx)
    labels = sorted({composeconfig.resolve_config_files(c.config_files, c.working_dir)
                     for c in running if c.config_files})  # fmt: skip
    if recorded:
        others = [label for label in labels if not _same_files(ctx, label, recorded)]
        if others and not ctx.opts.force:
            raise DeployError(
                f"the running containers of {ctx.opts.project} were started with "
                f"{' and '.join(labels)}, not with {recorded['config_files']} (the last up by "
                "imagekit); bring them down with that file yourself, or pass --force."
            )
        kept = recorded_files(ctx, recorded)
        env_file = ctx.paths.env_copy if recorded.get("env_file") else None
        return DownFiles([item["copy"] for item in kept], recorded.get("project_dir"), env_file,
                         recorded.get("env", {}), kept, recorded["config_files"])  # fmt: skip
    if labels and labels != [",".join(ctx.compose_files)] and not ctx.opts.force:
        raise DeployError(
            f"the running containers of {ctx.opts.project} were started with {' and '.join(labels)}"
            f" and imagekit has no record of that up; bring them down with that file, or pass "
            "--force to use the config_files label."
        )
    files = labels[0].split(",") if labels else ctx.compose_files
    return DownFiles(files, None, ctx.opts.env_file, {}, [], ",".join(files))


def _same_files(ctx: Context, label: str, recorded: LastUp) -> bool:
    """Whether containers labelled with ``label`` (their compose files) were started with the
    files of the last up: the same paths, or files of other paths with the same contents in the
    same order. A rollback starts the image's services with the state folder's copies of the
    files while MariaDB and Redis keep the labels of the originals (a real v15 stack refused every
    deploy after a rollback until --force, 2026-12-07)."""
    if label == recorded["config_files"]:
        return True
    wanted = [item["sha256"] for item in recorded_files(ctx, recorded)]
    return [sha256_on_target(ctx.runner, path) for path in label.split(",")] == wanted


def note_changed_files(ctx: Context, files: DownFiles, full: bool) -> None:
    for item in files.kept:
        if sha256_on_target(ctx.runner, item["path"]) != item["sha256"]:
            how = (
                f"down used the copy from that up ({item['copy']})"
                if full
                else "up recreated what it changes"
            )
            ctx.report.notes.append(f"{item['path']} changed since the last up; {how}.")


def needs_full_down(ctx: Context, running: Sequence[Container]) -> bool:
    """``compose down`` first (everything stops) only with --full-down or when the running
    containers were started with another set of compose files than this deploy's (their
    labels); the same files with other contents are compose's to converge (``up``). A file
    of another path with the same content (the kept copy a rollback ran with) is the same file."""
    if ctx.opts.full_down:
        return True
    target = [sha256_on_target(ctx.runner, path) for path in ctx.compose_files]
    for label in {composeconfig.resolve_config_files(c.config_files, c.working_dir) for c in running}:
        paths = label.split(",") if label else []
        if paths == ctx.compose_files:
            continue
        if [sha256_on_target(ctx.runner, path) for path in paths] != target:
            return True
    return False


def check_services_kept(ctx: Context) -> None:
    """Refuse (exit 13) when services of the running project are not in the rendered config:
    ``up --remove-orphans`` would remove them (real-lab 14: db, redis-cache and redis-queue gone
    with a file set missing frappe_docker's overrides). ``--force`` removes them."""
    assert ctx.config is not None
    running = project_services(ctx)  # through the engine that renders and runs the stack
    gone = sorted({c.service for c in running} - set(ctx.config.services))
    if not gone:
        return
    if ctx.opts.force:
        said = (
            f"--force: the deploy removes {', '.join(gone)} (not in the compose files "
            f"{', '.join(ctx.compose_files)}): up --remove-orphans stops and deletes "
            f"{'its container' if len(gone) == 1 else 'their containers'} (named volumes stay)."
        )
        ctx.emit(said)  # said before anything stops, not only in the report at the end
        ctx.report.notes.append(said)
        return
    recorded = read_last_up(ctx)
    labels = sorted({composeconfig.resolve_config_files(c.config_files, c.working_dir)
                     for c in running if c.service in gone and c.config_files})  # fmt: skip
    last = recorded["config_files"] if recorded else " and ".join(labels) or "unknown files"
    raise DeployError(
        f"the compose files {', '.join(ctx.compose_files)} have no service {', '.join(gone)}, which "
        f"{'is' if len(gone) == 1 else 'are'} part of project {ctx.opts.project} now (the files of the last "
        f"up: {last.replace(',', ', ')}): the deploy would remove {'it' if len(gone) == 1 else 'them'}. "
        "Deploy with those files (--compose for each, or the target that names them), or pass --force to "
        "remove them. Nothing was stopped."
    )


def recorded_files(ctx: Context, recorded: LastUp) -> list[KeptFile]:
    """The files of the last up with their hash and copy (records before several files: one)."""
    items: object = recorded.get("files")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items) or not items:
        items = [{"path": recorded.get("config_files"), "sha256": recorded.get("sha256")}]
    what = f"a compose file in {ctx.paths.last_up}"
    return [
        KeptFile(path=validate.not_an_option(item.get("path"), what, DeployError),
                 sha256=str(item.get("sha256")), copy=copy_path(ctx.paths, index))
        for index, item in enumerate(items)
    ]  # fmt: skip


def copy_path(paths: StatePaths, index: int) -> str:
    """Where the copy of the ``index``-th compose file of the last up is kept (never read from a file)."""
    return paths.compose_copy if index == 0 else f"{paths.root}/compose.{index}.yaml"


def read_last_up(ctx: Context) -> LastUp | None:
    """The record of the last ``up``; one that cannot be used is treated as missing, with a note."""
    text = ctx.runner.read_file(ctx.paths.last_up)
    if text is None:
        return None
    try:
        return parse_last_up(text)
    except ValueError as exc:
        ctx.report.notes.append(
            f"{ctx.paths.last_up} cannot be used ({exc}): treated as missing; down used the "
            "containers' config_files label."
        )
        return None


def last_up_version(ctx: Context) -> str | None:
    """The version the last ``up`` started (what runs now), when last-up.json names a valid one."""
    text = ctx.runner.read_file(ctx.paths.last_up)
    try:
        data = parse_last_up(text) if text is not None else LastUp()
        return validate.image_tag(data.get("version"), "the version in last-up.json")
    except (ValueError, ImagekitError):
        return None


def parse_last_up(text: str) -> LastUp:
    """``last-up.json`` (a file on the target: any content) checked field by field; raises
    ``ValueError`` naming the first field that cannot be used."""
    data = json_object(text)
    for key in ("config_files", "sha256", "project_dir", "env_file"):
        value = data.get(key)
        if value is not None or key in ("config_files", "sha256"):
            _state_value(value, key)
    _state_value(data.get("engine"), "engine", engine_name)
    env = data.get("env", {})
    if not isinstance(env, dict):
        raise ValueError("env is not an object")
    for name, value in env.items():
        _state_value(name, "a variable name in env", validate.env_name)
        if not isinstance(value, str) or "\x00" in value:
            shown = "a variable shaped like a token" if validate.TOKEN_SHAPE.search(name) else name
            raise ValueError(f"env {shown} is not a string")
    return cast(LastUp, data)  # the fields deploy reads are checked above


def last_up_engine(recorded: LastUp) -> str:
    """The engine the last up ran on (``parse_last_up`` checked it; none recorded: compose)."""
    return engine_name(recorded.get("engine"))


def _state_value(value: object, what: str, check: Callable[..., str] = validate.not_an_option) -> None:
    try:
        check(value, what)
    except ImagekitError as exc:
        raise ValueError(exc.message.rstrip(".")) from None


def sha256_on_target(runner: Runner, path: str) -> str | None:
    content = runner.read_file(path)
    return hashlib.sha256(content.encode()).hexdigest() if content is not None else None


def keep_copy(ctx: Context, env: dict[str, str]) -> None:
    runner, paths = ctx.runner, ctx.paths
    files: list[KeptFile] = []
    for index, path in enumerate(ctx.compose_files):
        text = runner.read_file(path) or ""
        copy = copy_path(paths, index)
        runner.write_file(copy, text.encode())
        files.append(KeptFile(path=path, sha256=hashlib.sha256(text.encode()).hexdigest(), copy=copy))
    if ctx.opts.env_file:
        runner.write_file(paths.env_copy, (runner.read_file(ctx.opts.env_file) or "").encode())
    record = LastUp({
        "config_files": ",".join(ctx.compose_files),
        "sha256": files[0]["sha256"],
        "files": files,
        "project_dir": str(Path(ctx.compose_file).parent),
        "env_file": ctx.opts.env_file,
        "env": env,
        "version": ctx.opts.version,
        "when": now_iso(),
        "engine": ctx.engine.name if ctx.engine else DEFAULT_ENGINE,
    })  # fmt: skip
    write_last_up(runner, paths.last_up, record)


def write_last_up(runner: Runner, path: str, record: LastUp) -> None:
    """The one writer of ``last-up.json`` (deploy's up, rollback's up)."""
    runner.write_file(path, json.dumps(record, indent=2).encode())
