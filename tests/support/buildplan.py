"""A build plan from fixtures, without docker or git (unit tests of build.plan and build.execute)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from frappe_imagekit.appsjson import inject
from frappe_imagekit.build import plan as build
from frappe_imagekit.build.containerfile import Containerfile, parse_containerfile
from frappe_imagekit.build.plan import BuildOptions, BuildPlan
from frappe_imagekit.check import Secrets
from frappe_imagekit.dockercli import BUILDKIT, DockerCli
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace
from tests.support.workspace import DEFAULT_APPS, DEFAULT_ENV

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "build"
CANARY = "ghp_unitCANARY0123456789abcdef"
FRAPPE = {"name": "frappe", "url": "https://github.com/frappe/frappe", "ref": "version-15",
          "ref_kind": "release-line", "sha": "a" * 40}  # fmt: skip
APPS = [
    {"name": "erpnext", "url": "https://github.com/frappe/erpnext", "ref": "v15.17.0",
     "ref_kind": "release-tag", "sha": "b" * 40},
    {"name": "de_macrs", "url": "https://github.com/desiredeffect/de_macrs.git", "ref": "v0.0.4",
     "ref_kind": "release-tag", "sha": "c" * 40},
]  # fmt: skip
ENV = {**DEFAULT_ENV, "DE_SITE_VERSION": "v1.1.5", "DE_MACRS_PAT": CANARY}
APPS_JSON = DEFAULT_APPS
CLI = DockerCli("/usr/bin/docker", "20.10.24+dfsg1", BUILDKIT)


def containerfile_fixture(name: str) -> Containerfile:
    path = FIXTURES / name
    return parse_containerfile(path.read_text(), path)


def make_plan(tmp_path: Path, containerfile: str = "secret.Containerfile", **options: Any) -> BuildPlan:
    injected = inject(APPS_JSON, ENV)
    secrets = Secrets(injected=injected, redactor=Redactor([CANARY]))
    sources = build.Sources(
        ENV,
        containerfile_fixture(containerfile),
        dict(FRAPPE),
        [dict(a) for a in APPS],
        json.dumps(APPS_JSON),
        secrets,
    )
    return build.assemble_plan(Workspace.at(tmp_path), BuildOptions(**options), sources, CLI)
