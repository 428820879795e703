"""`imagekit build`."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import command, workspace_option

WORKSPACE_OPTION = workspace_option()
CONTAINERFILE_OPTION = typer.Option(
    None,
    "--containerfile",
    "-f",
    help="Containerfile to build (default: CONTAINERFILE in .env, else imagekit's own).",
)
CONTEXT_OPTION = typer.Option(None, "--context", help="Build context folder (default: the workspace).")


class Progress(StrEnum):
    AUTO = "auto"
    PLAIN = "plain"
    TTY = "tty"


PROGRESS_OPTION = typer.Option(
    Progress.AUTO,
    "--progress",
    help="auto, plain (BuildKit's own lines) or tty (compact display).",
)
_STEP = re.compile(r"^#\d+ \[")


@command("build")
def build(
    workspace: Path = WORKSPACE_OPTION,
    containerfile: Path | None = CONTAINERFILE_OPTION,
    context: Path | None = CONTEXT_OPTION,
    docker: str | None = typer.Option(
        None, "--docker", help="docker CLI to build with (default: $IMAGEKIT_DOCKER, then PATH)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Build every step again."),
    pull: bool = typer.Option(False, "--pull", help="Pull newer base images first."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild a taken version; the old image keeps a -replaced- tag."
    ),
    no_leak_scan: bool = typer.Option(
        False, "--no-leak-scan", help="Skip the secret scan of the finished image (not advised)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan and the docker command; build nothing."
    ),
    progress: Progress = PROGRESS_OPTION,
    strict: bool = typer.Option(False, "--strict", help="Moving branches are errors."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest (or plan) as JSON."),
) -> None:
    """Check the workspace, build the image with BuildKit, scan it for secrets, record it."""
    from frappe_imagekit.build import BuildOptions, execute_build, guard_tag, plan_build
    from frappe_imagekit.workspace import Workspace

    ws = Workspace.at(workspace)
    options = BuildOptions(
        containerfile=containerfile,
        context=context,
        docker=docker,
        no_cache=no_cache,
        pull=pull,
        force=force,
        leak_scan=not no_leak_scan,
        dry_run=dry_run,
        progress=progress.value,
        strict=strict,
    )
    plan = plan_build(ws, options)
    output.use_redactor(plan.redactor)
    for note in plan.notes:
        output.err(f"note: {note}")
    for warning in plan.warnings:
        output.warn(warning)
    guard_tag(ws, plan)  # refuse a taken version before anything else is printed or built
    if dry_run:
        render_plan(plan.to_dict(), as_json)
        return
    if not as_json:
        output.out(f"Building {plan.ref} ({plan.apps_json_mode} mode, {plan.cli.builder})")
    with progress_sink(progress.value) as sink:
        data = execute_build(ws, plan, on_line=sink)
    if as_json:
        output.print_json(data)
    else:
        render_result(data)


def render_plan(plan: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(plan)
        return
    output.out(f"Plan: {plan['kind']} {plan['image']} (dry run, nothing is built)")
    output.out(f"  Containerfile: {plan['containerfile']} ({plan['apps_json_mode']} mode)")
    output.out(f"  context:       {plan['context']}")
    output.out(f"  docker:        {plan['docker']['cli']} ({plan['docker']['builder']})")
    output.out(f"  daemon:        {plan['docker']['daemon']}")
    for name, value in plan["build_args"].items():
        output.out(f"  build arg:     {name}={value}")
    rows = [
        [p["name"], p["ref"], str(p["ref_kind"]), (p["sha"] or "-")[:12], p["url"]]
        for p in [plan["frappe"], *plan["apps"]]
    ]
    output.print_table("Apps", ["app", "ref", "kind", "sha", "url"], rows)
    output.out("Environment of the docker process (secrets travel here, never in argv):")
    for name, value in plan["command_env"].items():
        output.out(f"  {name}={value}")
    output.out("Command:")
    output.out("  " + shlex.join(plan["command"]))


def render_result(data: dict[str, Any]) -> None:
    image = data["image"]
    output.out(f"Built {image['ref']} ({image['id']}) in {data['duration_seconds']:.1f} s")
    if image.get("replaced"):
        output.out(f"The image it replaced is kept as {image['replaced']}")
    scan = data["leak_scan"]
    if scan.get("status") == "skipped":
        output.warn("the leak scan was skipped (--no-leak-scan)")
    else:
        output.out(f"Leak scan: {scan['status']} ({scan.get('seconds', 0):.1f} s)")
    output.out(f"Manifest: builds/{data['version']}.json, log: builds/{data['log_file']}")


@contextmanager
def progress_sink(progress: str) -> Iterator[Callable[[str], None]]:
    """Plain BuildKit lines on stderr, or a one-line live display on a terminal."""
    if progress == "plain" or (progress == "auto" and not sys.stderr.isatty()):
        yield output.err
        return
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    with console.status("starting the build") as status:

        def show(line: str) -> None:
            if _STEP.match(line):
                status.update(output.safe(line)[: max(20, console.width - 4)])
            elif "ERROR" in line or line.startswith("error"):
                console.print(output.safe(line), markup=False)

        yield show
