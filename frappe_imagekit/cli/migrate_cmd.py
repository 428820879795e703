"""`imagekit migrate-report`: the report deploy prints, from a saved migrate transcript."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from frappe_imagekit.cli import output
from frappe_imagekit.cli.main import command
from frappe_imagekit.deploy.migrate_parse import SiteResult
from frappe_imagekit.deploy.migrate_report import MigrateReport, report_transcript
from frappe_imagekit.deploy.sequence import SiteReport
from frappe_imagekit.errors import NotFoundError, UsageError
from frappe_imagekit.validate import site_name

MAX_TRANSCRIPT = 256 * 1024 * 1024  # bytes read at most (a real migrate prints a few hundred KB)


@command("migrate-report")
def migrate_report_command(
    file: str = typer.Argument(
        "-", metavar="[FILE|-]", help="Output of `bench --site S migrate` (or run-patch); - reads stdin."
    ),
    site: str | None = typer.Option(None, "--site", help="The site migrated (when the output does not say)."),
    exit_code: int | None = typer.Option(
        None, "--exit-code", help="Exit status of that bench run, when known (0 = it succeeded)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Report a saved migrate transcript: per site the result, the failed patch, the exception,
    the app frames, warnings and next steps. Exit 0 all ok, 9 a failed patch, 10 otherwise."""
    if site is not None and site != "all":
        site_name(site, "--site", UsageError)
    if exit_code is not None and not 0 <= exit_code <= 255:
        raise UsageError(f"--exit-code {exit_code} is not an exit status: pass 0 to 255, or leave it out.")
    report = report_transcript(_read(file), site=None if site == "all" else site, exit_code=exit_code)
    if as_json:
        output.print_json(report.to_dict())
    else:
        render_migrate_report(report)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))


def _read(file: str) -> str:
    if file == "-":
        if sys.stdin.isatty():
            raise UsageError(
                "no transcript given: pass the file the migrate output was saved in, or pipe it in."
            )
        data = sys.stdin.buffer.read(MAX_TRANSCRIPT)
    else:
        path = Path(file)
        if not path.is_file():
            raise NotFoundError(
                f"transcript {file} does not exist or is not a file: pass the file the migrate "
                "output was saved to, or - to read it from stdin."
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_TRANSCRIPT)
    return data.decode("utf-8", "replace")


def render_migrate_report(report: MigrateReport) -> None:
    status = "" if report.run_exit_code is None else f" (bench exit status {report.run_exit_code})"
    rows = [[s.site or "-", s.result, s.failed_patch or s.failed_module or "-"] for s in report.sites]
    output.print_table(f"Migrate report: {report.result}{status}", ["site", "result", "patch"], rows)
    if report.where and any(s.next_steps for s in report.sites):
        output.out(f"note: {report.where}")
    for site in report.sites:
        render_site(site)


def headline(site: SiteResult | SiteReport) -> str:
    """What failed, in a few words (``s1.lab: FAILED in <headline>``)."""
    section = f" ({site.section})" if getattr(site, "section", None) else ""
    line = f", patches.txt line {site.failed_patch}" if site.failed_patch else ""
    services = ", ".join(site.services or [])
    return {
        "patch-failed": f"patch {site.failed_patch}{section}",
        "import-failed": f"import of patch module {site.failed_module or '(unknown module)'}{line}",
        "doctype-failed": f"doctype sync ({site.doctype or site.doctype_file or 'unknown doctype'})",
        "patches-txt-invalid": "reading an app's patches.txt",
        "hook-failed": site.step or "a migrate hook",
        "sync-failed": site.step or "a sync after the patches",
        "lock": "the migrate lock is held by another migrate",
        "services-down": f"services down: {services} not running" if services else "services down",
        "site-not-found": "the site does not exist",
    }.get(site.result or "", "migrate")


def render_site(site: SiteResult | SiteReport) -> None:
    """A site's failure (or warnings), the way deploy and migrate-report print it."""
    if site.status == "failed":
        output.out(f"{site.site}: FAILED in {headline(site)}")
        exception = (site.exception or "").split("\n")
        for line in exception if site.exception else []:
            output.out(f"  {line}")
        frames = site.traceback[: len(site.traceback) - len(exception)] if site.exception else site.traceback
        for line in frames:
            output.out(f"  {line}")
        for note in getattr(site, "migrate_notes", None) or getattr(site, "notes", None) or []:
            output.out(f"  note: {note}")
    for warning in site.warnings or []:
        output.out(f"{site.site}: warning: {warning}")
    for step in site.next_steps or []:
        output.out(f"  next: {step}".replace("\n", "\n        "))
