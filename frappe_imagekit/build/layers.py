"""The final image's layers follow the apps: one layer per repository, in apps.json order.

The production Containerfile's final stage copies the whole bench in one ``COPY --from=builder``,
so a bump of one small app changed one layer holding everything (790 MB of a real v15 image:
frappe, node_modules, the Python env, assets). In the generated Containerfile each bench step is
its own stage (``bench-frappe``, ``bench-<app>``...); around its work the step lists what it
changed in the bench (every entry whose ctime moved: the app's source and built assets, what its
dependencies added to the Python env and node_modules, and shared files such as ``apps.txt``,
``assets.json`` and the commits) and what it removed (``imagekit-git mark`` and ``layer``).
The final stage then applies each step's lists in order, one ``RUN`` per repository that
mounts that step's stage read-only (``imagekit-git apply``): its layer holds exactly that step's
changes, and its removals as whiteouts. A bump of the last app re-runs the last step and the
last ``RUN`` only: every other layer is the same layer as before (same cache key, same bytes).

Only BuildKit features of Docker 20.10's built-in frontend are used (``RUN --mount=type=bind,
from=``; no ``COPY --link``, no ``# syntax=`` line), so it builds there and with buildx 0.13.
"""

from __future__ import annotations

from collections.abc import Sequence

COPY_LINE = "COPY --from=builder --chown=frappe:frappe /home/frappe/frappe-bench /home/frappe/frappe-bench\n"
STEP_ROOT = "/tmp/imagekit-step"  # where the final stage mounts a step's stage
STAGE_PREFIX = "bench-"
# ARGs of the builder stage every bench step reads: a stage sees only the ARGs it declares.
STEP_ARGS = ("PIP_INDEX_URL", "NPM_REGISTRY")


def stage_name(repository: str) -> str:
    """The stage of ``repository``'s bench step (app names are lower-case Python names, which
    are valid stage names)."""
    return STAGE_PREFIX + repository


def step_stage(repository: str, parent: str) -> str:
    """The ``FROM`` line that opens ``repository``'s step stage on top of ``parent``."""
    declared = "".join(f"ARG {name}\n" for name in STEP_ARGS)
    return f"FROM {parent} AS {stage_name(repository)}\n{declared}"


def final_stage(repositories: Sequence[str], tail: str, helper: str) -> str:
    """The production file's final stage with its one bench ``COPY`` replaced by one layer per
    repository (``ValueError`` when the stage lost that line)."""
    if tail.count(COPY_LINE) != 1:
        raise ValueError("the production Containerfile's final stage lost its bench COPY line")
    applied = "\n".join(_apply(name, helper) for name in repositories)
    return tail.replace(COPY_LINE, _APPLY_HEAD + applied)


_APPLY_HEAD = """\
# One layer per repository, in the order of the bench steps: each RUN mounts that step's stage
# and unpacks what the step changed in the bench (and removes what it removed). The built
# assets move from sites/assets to assets (the entrypoint links them back). A bump of the last
# app changes its own layer only; every layer before it is the same layer as before.
"""


def _apply(repository: str, helper: str) -> str:
    mount = f"--mount=type=bind,from={stage_name(repository)},source=/,target={STEP_ROOT}"
    return f"RUN {mount} \\\n    sh {STEP_ROOT}{helper} apply {repository} {STEP_ROOT}\n"
