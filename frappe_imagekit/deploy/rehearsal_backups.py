"""The backups rehearsals take (``<state>/projects/<project>/rehearsals/<id>/``), pruned by the
rules of deploy backups (``backups.plan_prune``): all but the newest ``KEEP`` rehearsals' go,
except the backups of a rehearsal that did not pass (failed, interrupted or unfinished: the data
it failed on) and the newest backups of each version rehearsed (what its last rehearsal ran on).
"""

from __future__ import annotations

from collections.abc import Iterable

from frappe_imagekit.deploy import backups
from frappe_imagekit.deploy.backups import DeployFacts
from frappe_imagekit.deploy.record import REHEARSAL, DeployRecord, read_deploys
from frappe_imagekit.deploy.rehearsal_gate import PASSED
from frappe_imagekit.errors import ImagekitError
from frappe_imagekit.runner import Runner
from frappe_imagekit.workspace import Workspace

KEEP = 5  # rehearsals whose backups stay, as deploy's --keep-backups default
FOLDER = "rehearsals"


def facts(records: Iterable[DeployRecord], project: str) -> dict[str, DeployFacts]:
    """Each rehearsal of ``project`` by its id (the folder's name): whether it did not pass, and
    the version it rehearsed (the newest backups of each stay)."""
    return {
        r.deploy_id: DeployFacts(r.result != PASSED, r.version)
        for r in records
        if r.kind == REHEARSAL and r.project == project and r.deploy_id and r.version
    }


def prune(
    runner: Runner, ws: Workspace, root: str, project: str, current: str, keep: int = KEEP
) -> list[str]:
    """Remove the rehearsal backup folders under ``root`` (the project's state folder) that the
    rules let go (``current``: the rehearsal running now stays); the notes to print. A failure
    to prune is a note, never a failed rehearsal."""
    records = read_deploys(ws).records
    try:
        plan = backups.prune(runner, f"{root}/{FOLDER}", keep, facts(records, project), current)
    except ImagekitError as exc:
        return [f"the backups of older rehearsals were not pruned: {exc.message}"]
    notes = []
    if plan.removed:
        went = [f"{i} (of {plan.data_of[i]})" if i in plan.data_of else i for i in plan.removed]
        notes.append(f"removed the backups of older rehearsals: {', '.join(went)}")
    if plan.kept:
        kept = ", ".join(f"{i} ({why.replace('deploy', 'rehearsal')})" for i, why in plan.kept.items())
        notes.append(f"kept beyond the newest {keep} rehearsals: {kept}")
    return notes
