"""What ``imagekit deploy --dry-run`` says it would do, step by step (pure)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlanFacts:
    """What preflight found on the target."""

    project: str
    image_ref: str
    lock_dir: str
    sites: Sequence[str]  # of the running backend; empty: none or no site yet
    running: bool  # containers of the project exist
    backup: bool
    down_argv: Sequence[str] | None  # None: nothing to bring down
    up_argv: Sequence[str]
    up_env: dict[str, str]
    image_services: Sequence[str]
    oneshot: Sequence[str]
    migrator: str | None
    migrate_only: bool = False
    other_services: dict[str, str] = field(default_factory=dict)
    maintenance: bool = False  # the maintenance window (deploy/maintenance.py)
    backup_files: bool = False  # bench backup --with-files
    kept: Sequence[str] = ()  # services of other images (MariaDB, Redis): not stopped without a down
    kill_first: Sequence[str] = ()  # killed before they are replaced (--kill-first)


def steps(facts: PlanFacts) -> list[str]:
    """Every step of the deploy, in order, as one line each."""
    out = [f"take the deploy lock {facts.lock_dir}"]
    if facts.maintenance:
        out += _window_steps(facts, opening=True)
    if not facts.migrate_only:
        out += _replace_steps(facts)
    out += _migrate_steps(facts)
    if facts.maintenance:
        out += _window_steps(facts, opening=False)
    out.append("record the deploy in deploys/ and the target's audit.log; release the lock")
    return out


def _replace_steps(facts: PlanFacts) -> list[str]:
    out = []
    if facts.backup and facts.running:
        files = " --with-files" if facts.backup_files else ""
        out += [f"bench --site {site} backup{files}" for site in facts.sites] or ["no site yet: no backup"]
    if facts.down_argv:
        out.append(f"down: {shlex.join(facts.down_argv)}")
    elif facts.running:
        out.append(_no_down_step(facts))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in facts.up_env.items())
    out.append(f"up: {env} {shlex.join(facts.up_argv)}")
    if facts.oneshot:
        out.append(f"wait for the one-shot services to exit 0: {', '.join(facts.oneshot)}")
    out.append("wait for the other services to run (healthy where they have a healthcheck)")
    out.append(f"check that {', '.join(facts.image_services)} run the image id of {facts.image_ref}")
    return out


def _no_down_step(facts: PlanFacts) -> str:
    killed = (
        f"kill {', '.join(facts.kill_first)} (they ignore SIGTERM, hold no state); "
        if facts.kill_first
        else ""
    )
    kept = ", ".join(facts.kept) or "no other service"
    return (
        f"no down: {killed}up recreates the services whose image or configuration changed "
        f"({', '.join(facts.image_services)} get the new image); {kept} keep running unless their "
        "definition changed (--full-down stops everything first)"
    )


def _window_steps(facts: PlanFacts, opening: bool) -> list[str]:
    if not facts.sites:
        return ["maintenance window: none (no site yet)"] if opening else []
    if opening:
        return [
            f"bench --site {site} set-maintenance-mode on; bench --site {site} scheduler pause; "
            f"bench --site {site} ready-for-migration (a warning when jobs are queued)"
            for site in facts.sites
        ]
    return [
        f"after a successful migrate: bench --site {site} set-maintenance-mode off; bench --site {site} "
        "scheduler resume (a failed site stays in maintenance)"
        for site in facts.sites
    ]


def _migrate_steps(facts: PlanFacts) -> list[str]:
    if facts.migrator and not facts.migrate_only:
        return [
            f"follow the {facts.migrator} service's logs (it runs bench --site all migrate on start);"
            " no second migrate"
        ]
    if not facts.sites:
        return ["migrate the sites found after up (none yet)"]
    return [f"bench --site {site} migrate" for site in facts.sites]
