"""What deploy asks of the rehearsals (``imagekit rehearse``, deploy/rehearse.py) before it runs.

Kept apart from deploy/rehearse.py (which uses the sandbox and the deploy sequence) so that the
deploy sequence can call it without an import cycle.
"""

from __future__ import annotations

from frappe_imagekit.deploy.record import REHEARSAL, DeployRecord, read_deploys
from frappe_imagekit.errors import UsageError
from frappe_imagekit.workspace import Workspace

PASSED = "succeeded"  # a rehearsal's result when every site migrated and answered


def last_rehearsal(ws: Workspace, project: str, version: str) -> DeployRecord | None:
    """The newest recorded rehearsal of ``version`` on ``project`` (None: never rehearsed)."""
    records = read_deploys(ws).records
    found = [r for r in records if r.kind == REHEARSAL and (r.project, r.version) == (project, version)]
    return max(found, key=lambda r: r.started or "", default=None)


def check_last_rehearsal(ws: Workspace, project: str, version: str, *, force: bool, required: bool) -> None:
    """Deploy's preflight: refuse (exit 2) a version whose last rehearsal failed unless ``force``;
    with ``required`` (``deploy --rehearse``), also a version whose last rehearsal did not pass."""
    last = last_rehearsal(ws, project, version)
    passed = last is not None and last.result == PASSED
    if required and not passed:
        said = (
            "was never rehearsed" if last is None else f"did not pass its last rehearsal ({last.deploy_id})"
        )
        raise UsageError(
            f"--rehearse: {version} {said} on {project}: run `imagekit rehearse {version}` first "
            "(with the same target or options), then deploy."
        )
    if last is not None and not passed and not force:
        raise UsageError(
            f"the last rehearsal of {version} on {project} ({last.deploy_id}) "
            f"{last.result or 'did not finish'}: `imagekit history` and deploys/ show it; rehearse again "
            "after a fix, or pass --force to deploy anyway."
        )
