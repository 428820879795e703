"""`imagekit history` and `imagekit rebuild`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import typer

from frappe_imagekit import build as build_pkg  # its modules load on first use, not for --help
from frappe_imagekit import history as core
from frappe_imagekit.build.records import ManifestPin
from frappe_imagekit.cli import output
from frappe_imagekit.cli.build_cmd import CONTEXT_OPTION, DOCKER_OPTION, NO_CACHE_OPTION, render_plan
from frappe_imagekit.cli.main import command, workspace_option
from frappe_imagekit.cli.progress_view import PROGRESS_OPTION, Progress, reporting
from frappe_imagekit.errors import ExitCode, ImagekitError
from frappe_imagekit.history import (
    DeployRun,
    Diff,
    HistoryListing,
    HistoryRow,
    PinChange,
    ShownBuild,
    pin_label,
    short_id,
)
from frappe_imagekit.workspace import Workspace

WORKSPACE_OPTION = workspace_option()


@command("history")
def history(
    version: str | None = typer.Argument(None, help="Show everything recorded for this build."),
    diff: tuple[str, str] | None = typer.Option(
        None, "--diff", metavar="OLD NEW", help="What changed between two builds."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=0, help="Show the newest N."),
    offline: bool = typer.Option(False, "--offline", help="--diff: do not ask remotes to count commits."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    workspace: Path = WORKSPACE_OPTION,
) -> None:
    """The build log: every build newest first, one build in full, or the diff of two."""
    ws = Workspace.at(workspace)
    if diff and diff[0] is not None:
        if version:
            raise ImagekitError("give either VERSION or --diff OLD NEW, not both.", ExitCode.USAGE)
        env = {} if offline else core.workspace_env(ws)
        result = core.diff_builds(ws, diff[0], diff[1], offline=offline, env=env)
        _emit(result.to_dict(), as_json, lambda: render_diff(result))
    elif version:
        shown = core.show_build(ws, version)
        _emit(shown, as_json, lambda: render_show(shown))
    else:
        listing = core.list_builds(ws, limit=limit)
        for broken in listing.broken:
            output.warn(f"skipped {broken.path.name}: {broken.reason}")
        for broken in listing.broken_deploys:
            output.warn(f"skipped deploys/{broken.path.relative_to(ws.deploys_dir)}: {broken.reason}")
        if as_json:  # compact: a long history is mostly read by scripts, and 4x faster to encode
            output.out(json.dumps(listing.to_dict(), separators=(",", ":")))
        else:
            render_listing(listing, ws)


def _emit(data: Mapping[str, object], as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        output.print_json(data)
    else:
        render()


# -- rendering -----------------------------------------------------------------------------


def render_listing(listing: HistoryListing, ws: Workspace) -> None:
    if not listing.rows:
        output.out(f"No builds recorded in {ws.builds_dir}.")
        return
    joiner = "\n" if output.is_terminal() else ", "
    rows: list[list[str]] = []
    for row in listing.rows:
        rows.append(_listing_cells(row, row.version, joiner, pin_label))
        for rebuild in row.rebuilds:
            rows.append(_listing_cells(rebuild, f"  ↳ rebuild of {row.version}", joiner, pin_label))
    columns = ["version", "date", "status", "image", "frappe", "apps", "deployed"]
    output.print_table("Builds (newest first)", columns, rows)
    if listing.total > len(listing.rows):
        output.out(f"Showing {len(listing.rows)} of {listing.total} builds (--limit).")


def _listing_cells(
    row: HistoryRow, label: str, joiner: str, pin_label: Callable[[ManifestPin | None], str]
) -> list[str]:
    apps = joiner.join(f"{app.get('name')} {pin_label(app)}" for app in row.apps) or "-"
    deployed = _places(row.deployed_to, row.deploys)
    return [
        label,
        row.created[:16].replace("T", " ") or "-",
        row.status,
        row.short_image_id,
        pin_label(row.frappe),
        apps,
        deployed or "-",
    ]


def _places(running: list[str], deploys: list[DeployRun]) -> str:
    """The places running the version (else the places it ran on, after "was"), each followed
    by what happened there since its last successful run (a failure the version recovered from
    at that place is not shown)."""
    runs: dict[str, list[DeployRun]] = {}
    for deploy in deploys:
        runs.setdefault(deploy["where"], []).append(deploy)
    if running:
        return ", ".join(_place(where, runs.get(where, [])) for where in running)
    return "was " + ", ".join(_place(where, runs[where]) for where in sorted(runs)) if runs else ""


def _place(where: str, runs: list[DeployRun]) -> str:
    last_ok = max((i for i, d in enumerate(runs) if d["result"] == "succeeded"), default=0)
    outcomes = list(dict.fromkeys(o for o in map(_outcome, runs[last_ok:]) if o))
    return f"{where} ({'; '.join(outcomes)})" if outcomes else where


def _outcome(deploy: DeployRun) -> str:
    """What happened to one run of a version, when it was more than a successful deploy."""
    if deploy["kind"] == "rehearsal":  # imagekit rehearse: tried in a sandbox, never served
        return f"rehearsal {deploy['result'] or '?'}"
    parts = [deploy["engine"]] if deploy["engine"] != "compose" else []  # swarm
    parts += ["migrate-only"] if deploy["migrate_only"] else []
    if deploy["kind"] == "rollback":
        parts.append(f"rollback from {deploy['rolled_back_from'] or '?'}")
    if deploy["result"] not in (None, "succeeded"):
        parts.append(str(deploy["result"]))
    if deploy["rolled_back_to"]:
        parts.append(f"rolled back to {deploy['rolled_back_to']}")
    return ", ".join(parts)


def _run_where(deploy: DeployRun) -> str:
    """The place, and the target named when it reached that place another way (SSH)."""
    target, where = deploy["target"], deploy["where"]
    return f"{where} (as {target})" if target and target != where else where


def _deploy_line(deploy: DeployRun) -> str:
    digest = f"pulled by {deploy['digest']}" if deploy["digest"] else None
    return " ".join(filter(None, [deploy["finished"], _outcome(deploy), digest]))


def render_show(shown: ShownBuild) -> None:
    m = shown["manifest"]
    image = m.get("image") or {}
    title = f"{m['version']}" + (f" (rebuild of {m['rebuild_of']})" if m.get("rebuild_of") else "")
    _section(
        f"Build {title}  [{shown['file']}]",
        [
            ("kind", m.get("kind")),
            ("status", m.get("status")),
            ("error", m.get("error")),
            ("created", m.get("created")),
            ("finished", m.get("finished")),
            ("duration", f"{m['duration_seconds']:.1f} s" if m.get("duration_seconds") else None),
        ],
    )
    _section(
        "Image",
        [
            ("ref", image.get("ref")),
            ("id", image.get("id")),
            ("short id", short_id(image.get("id")) if image.get("id") else None),
            ("old image moved to", image.get("replaced")),
            ("system tier", (m.get("base_tier") or {}).get("ref")),
            ("digests", ", ".join(image.get("repo_digests") or []) or None),
        ],
    )
    pins = [("frappe", m.get("frappe"))] + [(a.get("name"), a) for a in m.get("apps") or []]
    rows = [_pin_cells(name, pin) for name, pin in pins]
    output.print_table("Apps", ["app", "ref", "kind", "sha", "url"], rows)
    output.out()
    _section("Build args", sorted((m.get("build_args") or {}).items()))
    _section("Labels", sorted((m.get("labels") or {}).items()))
    drift = [(d.get("name"), d.get("message")) for d in m.get("drift") or []]
    _section("Drift check (rebuild)", drift)
    cf = m.get("containerfile") or {}
    content = cf.get("content")
    _section(
        "Containerfile",
        [
            ("path", cf.get("path")),
            ("sha256", cf.get("sha256")),
            ("apps.json mode", cf.get("apps_json_mode")),
            ("stored copy", f"{len(content.splitlines())} lines" if content else "missing"),
        ],
    )
    tools = m.get("tools") or {}
    _section("Tools", sorted(tools.items()))
    scan = m.get("leak_scan") or {}
    _section(
        "Leak scan",
        [
            ("status", scan.get("status")),
            ("findings", str(len(scan.get("findings") or [])) if scan else None),
            ("seconds", scan.get("seconds")),
        ],
    )
    wsinfo = m.get("workspace") or {}
    _section("Workspace", [("git commit", wsinfo.get("git_commit")), ("dirty", wsinfo.get("dirty"))])
    _section(
        "Fingerprint",
        [
            ("fingerprint", m.get("fingerprint")),
            ("apps.json sha256", m.get("apps_json_sha256")),
            ("log", m.get("log_file")),
        ],
    )
    if shown["rebuilds"]:
        _section("Rebuilds", [(r["file"], f"{r['status']} {r['created']}") for r in shown["rebuilds"]])
    where = ", ".join(shown["deployed_to"]) or "not running anywhere recorded"
    deploys = [(_run_where(d), _deploy_line(d)) for d in shown["deploys"]]
    _section("Deploys", [("running on", where), *deploys])


def _pin_cells(name: str | None, pin: ManifestPin | None) -> list[str]:
    p: ManifestPin | dict[str, str] = pin or {}
    cells = (
        p.get("ref") or "-",
        p.get("ref_kind") or "-",
        pin_label(pin).split("@")[-1],
        p.get("url") or "-",
    )
    return [str(name), *map(str, cells)]


def _section(title: str, items: Iterable[tuple[Any, Any]]) -> None:
    lines = [(k, v) for k, v in items if v not in (None, "")]
    if not lines:
        return
    output.out(title)
    width = max(len(str(k)) for k, _ in lines)
    for key, value in lines:
        output.out(f"  {str(key).ljust(width)}  {value}")
    output.out()


def render_diff(diff: Diff) -> None:
    output.out(f"{diff.old} -> {diff.new}")
    if diff.identical:
        output.out("  no changes: same apps, refs, SHAs, build args and Containerfile.")
    for app in diff.apps_added:
        output.out(f"  + {app.get('name')} {pin_label(app)} (added)")
    for app in diff.apps_removed:
        output.out(f"  - {app.get('name')} {pin_label(app)} (removed)")
    for change in diff.changes:
        output.out(f"  ~ {change.name}: {_change_text(change)}")
    for key, (old, new) in diff.args_changed.items():
        output.out(f"  ~ {key}: {old or '(unset)'} -> {new or '(unset)'}")
    if diff.containerfile_changed is None:
        output.out("  ? Containerfile: not recorded in both manifests")
    elif diff.containerfile_changed:
        old, new = diff.containerfile_sha256
        output.out(f"  ~ Containerfile changed (sha256 {(old or '')[:12]} -> {(new or '')[:12]})")
    else:
        output.out("  = Containerfile unchanged")
    old_id, new_id = diff.image_ids
    output.out(f"  image {short_id(old_id)} -> {short_id(new_id)}")


def _change_text(change: PinChange) -> str:
    ref = change.new_ref if change.old_ref == change.new_ref else f"{change.old_ref} -> {change.new_ref}"
    sha = f"{(change.old_sha or '-')[:7]} -> {(change.new_sha or '-')[:7]}"
    if change.old_sha == change.new_sha:
        return f"{ref} (same commit {(change.new_sha or '-')[:7]})"
    if change.commits is not None:
        count = change.commits
        tail = f"{count} commit(s) ahead" if count >= 0 else f"{-count} commit(s) back"
    else:
        tail = change.commits_note or "commit count unknown"
    return f"{ref}, {sha} ({tail})"


# -- rebuild -------------------------------------------------------------------------------


@command("rebuild")
def rebuild(
    version: str = typer.Argument(..., help="The recorded version to rebuild, e.g. v1.1.5."),
    allow_drift: bool = typer.Option(
        False, "--allow-drift", help="Build even if a recorded ref now points elsewhere."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rebuild over an existing tag; the old image keeps a -replaced- tag."
    ),
    tag: str | None = typer.Option(None, "--tag", help="Tag the result TAG instead of VERSION."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check drift and print the plan; build nothing."),
    docker: str | None = DOCKER_OPTION,
    context: Path | None = CONTEXT_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
    no_leak_scan: bool = typer.Option(
        False, "--no-leak-scan", help="Skip the secret scan of the rebuilt image (not advised)."
    ),
    progress: Progress = PROGRESS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the result (or plan) as JSON."),
    trust_containerfile: bool = typer.Option(
        False,
        "--trust-containerfile",
        help="Build the manifest's stored Containerfile even when it is not imagekit's generated "
        "text nor the workspace file with its sha256 (it runs with your tokens: read it first).",
    ),
    workspace: Path = WORKSPACE_OPTION,
) -> None:
    """Rebuild a past version from its manifest: same Containerfile, args, apps and commits."""
    ws = Workspace.at(workspace)
    options = build_pkg.rebuild.RebuildOptions(
        allow_drift=allow_drift,
        force=force,
        tag=tag,
        dry_run=dry_run,
        docker=docker,
        context=context,
        no_cache=no_cache,
        leak_scan=not no_leak_scan,
        trust_containerfile=trust_containerfile,
    )
    plan = build_pkg.rebuild.plan_rebuild(ws, version, options)
    with output.redacting(plan.build.redactor):
        render_drift(plan.drift)
        render_trusted(plan)
        if dry_run:
            if as_json:
                output.print_json(plan.to_dict())
            else:
                render_plan(plan.build.to_dict(), False)
            return
        if not as_json:
            output.out(f"Rebuilding {version} as {plan.ref} ({plan.build.cli.builder})")
        with reporting(progress.value, plan.build.redactor) as reporter:
            result = build_pkg.rebuild.execute_rebuild(ws, plan, reporter=reporter)
        if as_json:
            output.print_json(result.to_dict())
        else:
            render_rebuild(result, version)


def render_trusted(plan: build_pkg.rebuild.RebuildPlan) -> None:
    """What --trust-containerfile let through, and the whole text that will run."""
    if plan.trusted is None:
        return
    output.warn(f"--trust-containerfile: building the stored text anyway; {plan.trusted}")
    output.err(f"The Containerfile stored in builds/{plan.original_file} (it runs with your tokens):")
    output.err(plan.build.containerfile.text.rstrip("\n"))


def render_drift(drift: build_pkg.rebuild.DriftReport) -> None:
    for pin in drift.pins:
        if pin.status == "tag":
            output.err(f"note: {pin.message}")
        elif pin.status == "drift":
            output.warn(f"{pin.message} (--allow-drift: building the current commit)")


def render_rebuild(result: build_pkg.rebuild.RebuildResult, version: str) -> None:
    data = result.manifest
    image = data.get("image") or {}
    seconds = build_pkg.execute.build_seconds(data)
    output.out(f"Rebuilt {image.get('ref')} ({image.get('id')}) in {seconds:.1f} s")
    if image.get("replaced"):
        output.out(f"The image it replaced is kept as {image.get('replaced')}")
    scan = data.get("leak_scan") or {}
    output.out(f"Leak scan: {scan.get('status')} ({float(scan.get('seconds') or 0):.1f} s)")
    output.out(f"Manifest: builds/{result.manifest_file} (rebuild of {version})")
    cmp = result.comparison
    output.out(f"Compared with {version}:")
    for label, same in (
        ("apps", cmp.same_apps),
        ("commit SHAs", cmp.same_shas),
        ("Containerfile", cmp.same_containerfile),
        ("build args", cmp.same_args),
    ):
        trusted = label == "Containerfile" and cmp.trusted is not None
        output.out(f"  {label:<14} {'TRUSTED, unverified' if trusted else 'same' if same else 'DIFFERENT'}")
    for change in cmp.diff.changes:
        output.out(f"  ~ {change.name}: {_change_text(change)}")
    if cmp.trusted is not None:
        output.out(
            "The rebuild ran the manifest's stored Containerfile under --trust-containerfile, which "
            f"imagekit could not vouch for: it is not a verified rebuild of {version}."
        )
    elif cmp.identical:
        output.out(f"The rebuild matches {version}.")
