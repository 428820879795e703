"""`imagekit backups --verify NAME|latest` and `--all`: kept backups proven restorable."""

from __future__ import annotations

from frappe_imagekit.cli import output
from frappe_imagekit.deploy.backupcheck import BackupCheck, verify
from frappe_imagekit.deploy.backuplist import Backup, BackupListing, find
from frappe_imagekit.deploy.sandbox import SandboxOptions, check_options
from frappe_imagekit.deploy.sequence import choose_image
from frappe_imagekit.deploy.target import Target
from frappe_imagekit.errors import ExitCode, ImagekitError, NotFoundError, UsageError
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace


def chosen(listing: BackupListing, name: str | None, every: bool) -> list[Backup]:
    """``--all``: every kept backup; ``latest``: each site's of the newest deploy; else one name."""
    if every:
        return list(listing.backups)
    if name == "latest":
        newest = max((b.deploy_id for b in listing.backups), default=None)
        found = [b for b in listing.backups if b.deploy_id == newest]
        if not found:
            raise NotFoundError("no backup in the state folder to verify: `imagekit backups` lists them.")
        return found
    return [find(listing.backups, name or "")]


def run(
    runner: Runner, ws: Workspace, stack: Target, picked: list[Backup], log: str, as_json: bool, *, port: int
) -> None:
    """Verify the ``picked`` backups one after the other in a sandbox beside ``stack`` (the
    target as ``imagekit sandbox`` builds it), each result appended to ``log`` on the target;
    exit 12 naming the file when one fails."""
    checks: list[BackupCheck] = []
    for backup in picked:
        version = backup.data_of or backup.version or "unknown"
        image, tag = choose_image(ws, version) if version != "unknown" else ("unknown/unknown", "unknown")
        base = SandboxOptions(version=tag, backup=backup.name, image=image, where=stack, port=port)
        check_options(base)
        output.err(f"verifying {backup.name} (its data is of {version})")
        checks.append(verify(runner, ws, backup, base, log, output.err))
    _render(checks, as_json)
    failed = [c for c in checks if c.result != "ok"]
    if failed:
        raise ImagekitError(
            f"{len(failed)} of {len(checks)} backups failed: {failed[0].problem}; pick another backup "
            "(imagekit backups) and take a new one.",
            ExitCode.NOT_FOUND,
        )


def _render(checks: list[BackupCheck], as_json: bool) -> None:
    if as_json:
        output.print_json([c.to_dict() for c in checks])
        return
    for check in checks:
        output.out(f"{check.name}: {check.result} ({check.seconds:.1f}s)")
        for done in check.checks:
            output.out(f"  ok: {done}")
        if check.problem:
            output.out(f"  failed: {check.problem}")


def refuse_mixed(verify: str | None, every: bool) -> None:
    if verify is not None and every:
        raise UsageError("pass --verify NAME|latest or --all, not both.")
