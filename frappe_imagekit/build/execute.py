"""`imagekit build`, second half: guard the tag, run docker, scan, tag, record a manifest.

``execute_build`` takes the ``BuildPlan`` of ``build.plan``, builds its tiers (``build.tiers``),
runs docker, reads the commits back (``build.exact``), scans the image for leaks and writes the
manifest; it returns the manifest dict. ``keeping_replaced`` is the one transaction of build and
rebuild alike: a failure gives the version tag back.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from frappe_imagekit import dockerapi, dockercli, leakscan, manifest, progress
from frappe_imagekit.build import exact, steps, tiers
from frappe_imagekit.build.containerfile import Containerfile, parse_containerfile
from frappe_imagekit.build.plan import BuildPlan, next_version
from frappe_imagekit.build.records import BuildManifest, LeakScanRecord
from frappe_imagekit.errors import DockerError, ImagekitError, LeakError, TagExistsError
from frappe_imagekit.gitremote import workspace_commit
from frappe_imagekit.interrupts import interrupts_held
from frappe_imagekit.leakscan import cache as scancache
from frappe_imagekit.manifest import ImageRecord, Manifest
from frappe_imagekit.progress import Reporter
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace, write_text_atomic

_MAX_FREE_VERSION_PROBES = 50


def build_seconds(record: BuildManifest) -> float:
    """The seconds a recorded build spent outside its leak scan (the scan is timed apart)."""
    total = float(record.get("duration_seconds") or 0.0)
    scan = float((record.get("leak_scan") or {}).get("seconds") or 0.0)
    return max(0.0, total - scan)


# ---------------------------------------------------------------- tag guard


def guard_tag(ws: Workspace, plan: BuildPlan) -> str | None:
    """Refuse a taken version (``TagExistsError``); with ``force`` return the old image id."""
    old = dockerapi.inspect_image(plan.ref)
    in_history = plan.kind == "build" and plan.version in manifest.succeeded_versions(ws)
    if old is None and not in_history:
        return None
    if not plan.force:
        where = "exists locally" if old is not None else "is in the build history"
        free = suggest_free_version(ws, plan)
        raise TagExistsError(
            f"{plan.ref} {where}: set DE_SITE_VERSION={free} in .env (next free version), "
            "or pass --force to rebuild it (the old image keeps a -replaced- tag)."
        )
    return old["Id"] if old is not None else None


def suggest_free_version(ws: Workspace, plan: BuildPlan) -> str:
    taken = manifest.succeeded_versions(ws) | {plan.version}
    candidate = next_version(plan.version, taken)
    for _ in range(_MAX_FREE_VERSION_PROBES):
        if not dockerapi.image_exists(f"{plan.image_name}:{candidate}"):
            return candidate
        taken.add(candidate)
        candidate = next_version(plan.version, taken)
    return candidate


def replaced_tag(version: str, image_id: str) -> str:
    """``v1.1.5-replaced-0123456789ab``: where ``--force`` keeps the image it replaces."""
    return f"{version}-replaced-{image_id.removeprefix('sha256:')[:12]}"


# ---------------------------------------------------------------- execution


@dataclass
class _Run:
    """Mutable state of one execution (for the failure record)."""

    started: datetime
    started_clock: float
    log: list[str] = field(default_factory=list)
    replaced: str | None = None
    old_id: str | None = None
    image_id: str | None = None
    tagged: bool = False  # the new image holds the version tag (after a clean scan)
    digest: str | None = None  # containerimage.digest from buildx --metadata-file
    leak_scan: LeakScanRecord = field(default_factory=lambda: LeakScanRecord(status="skipped"))
    tracker: steps.StepTracker | None = None  # reads the build steps for the reporter


def execute_build(
    ws: Workspace,
    plan: BuildPlan,
    on_line: Callable[[str], None] | None = None,
    on_start: Callable[[Any], None] | None = None,
    reporter: Reporter = progress.SILENT,
) -> BuildManifest:
    """Guard, build, scan, tag, record. Returns the manifest written; on failure (an interrupt
    included) writes a failed one, and the version tag stays where it was before the build.
    ``on_line`` gets every (redacted) BuildKit line; ``reporter`` the steps (which app, cached
    or not, how long), the system tier and the leak scan."""
    run = _Run(datetime.now(UTC), time.monotonic())
    run.old_id = guard_tag(ws, plan)
    run.tracker = steps.StepTracker.of(_built_files(plan), reporter)
    try:
        _prepare_files(ws, plan)
        with keeping_replaced(plan, run):
            if plan.exact is not None:
                _ensure_tiers(plan, run, on_line, reporter)
            run.image_id = _docker_build(plan, run, on_line, on_start)
            if plan.leak_scan:  # built, not scanned yet: what a record says if interrupted from here
                run.leak_scan = {"status": "unfinished", "findings": []}
            if plan.exact is not None:
                planned = exact.planned_commits(plan.frappe, plan.apps)
                exact.verify_commits(run.image_id, plan.ref, planned)
            run.digest = dockercli.read_metadata_digest(plan.metadata_file)
            with progress.task(reporter, "leak scan") if plan.leak_scan else contextlib.nullcontext():
                run.leak_scan = _leak_scan(plan, run)
            _tag_scanned(plan, run)
            record = _manifest(ws, plan, run, status="succeeded", error=None)
            _retire_previous(ws, plan, run)
            record.log_file = _write_log(ws, plan, run, f"{plan.record_name}.log")
            record.write(ws.builds_dir / f"{plan.record_name}.json", plan.redactor)
        return record.as_read()
    except BaseException as exc:
        _record_failure(ws, plan, run, exc)
        raise
    finally:
        _remove_build_outputs(plan)
        if plan.containerfile.path is None and plan.containerfile_file is not None:
            plan.containerfile_file.unlink(missing_ok=True)


@contextlib.contextmanager
def keeping_replaced(plan: BuildPlan, run: _Run) -> Iterator[None]:
    """The "replaced image" rule of build and rebuild alike: an image that ``--force`` replaces
    keeps a ``<tag>-replaced-<id>`` spare tag; on any failure (Ctrl-C included) the version tag
    goes back where it was and the spare tag is dropped."""
    if run.old_id:
        run.replaced = _keep_old_image(plan, run.old_id)
    try:
        yield
    except BaseException:
        with contextlib.suppress(ImagekitError), interrupts_held():  # a second Ctrl-C cannot cut it short
            _restore_on_failure(plan, run)
        raise


def _ensure_tiers(
    plan: BuildPlan, run: _Run, on_line: Callable[[str], None] | None, reporter: Reporter
) -> None:
    assert plan.exact is not None
    with progress.task(reporter, "system tier") as ended:
        tiers.ensure_tiers(
            plan.exact.tiers, plan.tier_request(), lambda line: _log_line(plan, run, on_line, line)
        )
        if not any(tier.built for tier in plan.exact.tiers):
            ended.outcome = "reused"


def _built_files(plan: BuildPlan) -> list[Containerfile]:
    """The Containerfiles this build runs: the tiers' (exact mode), then the image's."""
    tier_files = [parse_containerfile(t.text) for t in plan.exact.tiers] if plan.exact is not None else []
    return [*tier_files, plan.containerfile]


def _log_line(plan: BuildPlan, run: _Run, on_line: Callable[[str], None] | None, line: str) -> None:
    """Every BuildKit line: redacted, then kept for the log, told to ``on_line``, and read for
    the step it names."""
    safe = plan.redactor.redact(line)
    run.log.append(safe)
    if on_line is not None:
        on_line(safe)
    if run.tracker is not None:
        run.tracker.feed(safe)


def _prepare_files(ws: Workspace, plan: BuildPlan) -> None:
    ws.builds_dir.mkdir(parents=True, exist_ok=True)
    _remove_build_outputs(plan)
    if plan.containerfile.path is None and plan.containerfile_file is not None:
        # A rebuild from a stored copy: docker reads it from a file next to the manifests.
        write_text_atomic(plan.containerfile_file, plan.containerfile.text)


def _remove_build_outputs(plan: BuildPlan) -> None:
    """The iidfile and metadata file docker writes (stale ones must never be read)."""
    for path in (plan.iidfile, plan.metadata_file):
        if path is not None:
            path.unlink(missing_ok=True)


def _keep_old_image(plan: BuildPlan, old_id: str) -> str:
    tag = replaced_tag(plan.tag, old_id)
    dockerapi.tag_image(old_id, plan.image_name, tag)
    return tag


def _docker_build(
    plan: BuildPlan,
    run: _Run,
    on_line: Callable[[str], None] | None,
    on_start: Callable[[Any], None] | None,
) -> str:
    code = dockercli.run_build(
        plan.command(), plan.secret_env(), lambda line: _log_line(plan, run, on_line, line), on_start
    )
    if code != 0:
        raise DockerError(
            f"docker build of {plan.ref} failed (exit {code}) at: {_failure_line(run.log)} - "
            f"read builds/{_failed_name(plan, run)}.log and fix the Containerfile or the refs."
        )
    image_id = plan.iidfile.read_text().strip() if plan.iidfile and plan.iidfile.exists() else ""
    if not image_id:
        raise DockerError(
            f"docker build of {plan.ref} wrote no image id: check that {plan.docker_cli} "
            "supports --iidfile (docker 18.09+)."
        )
    return image_id


def _failure_line(log: list[str]) -> str:
    """The most telling line of a failed BuildKit log."""
    for pattern in (r"^(ERROR|error|failed to solve)", r"(?i)error"):
        hits = [line.strip() for line in log if re.search(pattern, line.strip())]
        if hits:
            return hits[-1][:300]
    tail = [line.strip() for line in log if line.strip()]
    return tail[-1][:300] if tail else "no output"


def _leak_scan(plan: BuildPlan, run: _Run) -> LeakScanRecord:
    """Scan the untagged image (by id); a leak is a ``LeakError`` and it never gets a tag."""
    if not plan.leak_scan:
        return {"status": "skipped", "findings": [], "seconds": 0.0}
    assert run.image_id is not None
    run.leak_scan = {"status": "unfinished", "findings": []}  # what a failed record says if interrupted
    summary = scan_built_image(run.image_id, plan.redactor)
    findings = summary.get("findings") or []
    if summary["status"] == "clean":
        return summary
    run.leak_scan = summary
    first = findings[0]
    raise LeakError(
        f"the leak scan found a secret in the image built for {plan.ref} "
        f"({len(findings)} finding(s), first in {first.get('where')} "
        f"{first.get('location')}: {first.get('detail')}); it was not tagged: pass apps.json as "
        "a BuildKit secret and never copy it or its ARG into the final stage."
    )


def _tag_scanned(plan: BuildPlan, run: _Run) -> None:
    """Give the scanned (or, with --no-leak-scan, unscanned by request) image its version tag."""
    assert run.image_id is not None
    run.tagged = True  # set first: an interrupt inside tag_image must still be undone
    dockerapi.tag_image(run.image_id, plan.image_name, plan.tag)


def scan_built_image(ref: str, redactor: Redactor) -> LeakScanRecord:
    """Leak-scan ``ref``; layers already scanned clean for these secrets are not read again.

    History, Config.Env and labels are always scanned. When every layer's diff_id (a hash of
    its content) is known clean for exactly this secret set, ``docker save`` is skipped;
    otherwise the layers known clean are passed over and only the others are searched.
    """
    started = time.perf_counter()
    attrs = dockerapi.inspect_image(ref)
    layers = list(((attrs or {}).get("RootFS") or {}).get("Layers") or [])
    forms, key = redactor.forms, redactor.value_forms  # a bumped ref in apps.json keeps the key
    known = scancache.known_clean(key)
    if attrs is not None and layers and set(layers) <= known:
        needles = leakscan.Needles.from_forms(forms)
        found = leakscan.scan_metadata(attrs, dockerapi.image_history(ref), needles)
        return _scan_summary(found, redactor, started, layers_from_cache=len(layers))
    hints = leakscan.LayerHints(scancache.known_members(), scancache.known_sizes())
    result = leakscan.scan_image(ref, redactor, known, hints)
    if result.clean:
        scancache.remember_clean(key, layers, result.hints.sizes, result.hints.members)
    return _scan_summary(result.findings, redactor, started, layers_from_cache=result.layers_skipped)


def _scan_summary(
    findings: list[Any], redactor: Redactor, started: float, *, layers_from_cache: int
) -> LeakScanRecord:
    safe = [
        {k: redactor.redact(v) if isinstance(v, str) else v for k, v in _finding_dict(f).items()}
        for f in findings
    ]
    return {
        "status": "leak" if safe else "clean",
        "findings": safe,
        "seconds": round(time.perf_counter() - started, 3),
        "layers_from_cache": layers_from_cache,
    }


def _finding_dict(finding: Any) -> dict[str, object]:
    if hasattr(finding, "to_dict"):
        return dict(finding.to_dict())
    keys = ("where", "location", "form", "detail")
    return {k: str(getattr(finding, k, "")) for k in keys}


def _restore_on_failure(plan: BuildPlan, run: _Run) -> None:
    """A failed build leaves the version tag where it was before: on the image a --force build
    replaced (its spare -replaced- tag dropped), or on nothing."""
    if run.tagged:
        if run.old_id:
            dockerapi.tag_image(run.old_id, plan.image_name, plan.tag)
        else:
            dockerapi.remove_tag(plan.ref)
        run.tagged = False
    if not (run.old_id and run.replaced):
        return
    current = dockerapi.inspect_image(plan.ref)
    if current is not None and current.get("Id") == run.old_id:
        dockerapi.remove_tag(f"{plan.image_name}:{run.replaced}")
        run.replaced = None


def _manifest(ws: Workspace, plan: BuildPlan, run: _Run, *, status: str, error: str | None) -> Manifest:
    commit, dirty = workspace_commit(ws.root)
    server = _server_version()
    inspected = _inspect_safely(run.image_id) if run.image_id else None
    cf = plan.containerfile
    image = ImageRecord(
        name=plan.image_name,
        tag=plan.tag,
        id=run.image_id,
        repo_digests=list((inspected or {}).get("RepoDigests") or []),
        digest=run.digest,
        replaced=f"{plan.image_name}:{run.replaced}" if run.replaced else None,
    )
    tools = {
        "docker_client": plan.docker_version,
        "docker_server": server,
        "builder": plan.cli.builder,
        "buildkit": plan.buildx_version or f"BuildKit built into dockerd {server}",
        "docker_cli": plan.docker_cli,
    }
    return Manifest(
        kind=plan.kind,
        rebuild_of=plan.rebuild_of,
        version=plan.version,
        status=status,
        error=error,
        image=image,
        created=run.started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_seconds=round(time.monotonic() - run.started_clock, 3),
        tools=tools,
        containerfile={
            "path": str(cf.path) if cf.path else None,
            "sha256": cf.sha256,
            "content": cf.text,
            "apps_json_mode": plan.apps_json_mode,
        },  # fmt: skip
        build_args=dict(plan.build_args),
        labels=plan.labels,
        frappe=plan.frappe.copy(),
        apps=[app.copy() for app in plan.apps],
        apps_json_sha256=hashlib.sha256(plan.apps_json_text.encode()).hexdigest(),
        fingerprint=plan.fingerprint,
        workspace={"git_commit": commit, "dirty": dirty},
        leak_scan=run.leak_scan,
        base_tier=tiers.to_manifest(plan.exact.tiers) if plan.exact is not None else None,
        drift=plan.drift,
    )


def _inspect_safely(image_id: str) -> dict[str, Any] | None:
    try:
        return dockerapi.inspect_image(image_id)
    except DockerError:
        return None


def _server_version() -> str | None:
    try:
        return dockerapi.server_version()
    except DockerError:
        return None


def _retire_previous(ws: Workspace, plan: BuildPlan, run: _Run) -> None:
    """--force over a recorded version: keep the old record as ``<version>.replaced-<ts>.json``."""
    old = ws.builds_dir / f"{plan.record_name}.json"
    if not old.exists():
        return
    stamp = _stamp(run.started)
    try:
        data = manifest.load_manifest(old)
    except ValueError:
        data = None
    if data is not None:
        data["status"] = "replaced"
        if run.replaced:
            data["image"] = {
                **(data.get("image") or {}),
                "tag": run.replaced,
                "ref": f"{plan.image_name}:{run.replaced}",
            }
        target = old.with_name(f"{plan.record_name}.replaced-{stamp}.json")
        manifest.write_manifest(ws, data, target, plan.redactor)
        old.unlink()
    old_log = ws.builds_dir / f"{plan.record_name}.log"
    if old_log.exists():
        old_log.replace(old_log.with_name(f"{plan.record_name}.replaced-{stamp}.log"))


def _failed_name(plan: BuildPlan, run: _Run) -> str:
    return f"{plan.record_name}.failed-{_stamp(run.started)}"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _write_log(ws: Workspace, plan: BuildPlan, run: _Run, name: str) -> str:
    text = "\n".join(run.log) + ("\n" if run.log else "")
    write_text_atomic(ws.builds_dir / name, plan.redactor.redact(text))
    return name


def _record_failure(ws: Workspace, plan: BuildPlan, run: _Run, exc: BaseException) -> None:
    """Write ``<version>.failed-<ts>.json`` (+ log); never let this hide the original error."""
    if isinstance(exc, ImagekitError):
        message = exc.message
    elif isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    else:
        message = f"{type(exc).__name__}: {exc}"
    try:
        base = _failed_name(plan, run)
        record = _manifest(ws, plan, run, status="failed", error=plan.redactor.redact(message))
        record.log_file = _write_log(ws, plan, run, f"{base}.log")
        record.write(ws.builds_dir / f"{base}.json", plan.redactor)
    except (OSError, ImagekitError):
        pass
