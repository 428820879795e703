"""Realistic build manifests and deploy records (docs/DESIGN.md) for the history/rebuild tests.

Imported by tests as ``test_history_data``; it holds no tests itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CONTAINERFILE = """\
ARG PYTHON_VERSION=3.11.6
ARG DEBIAN_BASE=bookworm
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_BASE} AS base
ARG FRAPPE_BRANCH=version-15
ARG FRAPPE_PATH=https://github.com/frappe/frappe
ARG CACHE_BUST
RUN --mount=type=secret,id=apps_json,target=/opt/frappe/apps.json,uid=1000,gid=1000 \\
    bench init --apps_path=/opt/frappe/apps.json --frappe-branch=${FRAPPE_BRANCH} \\
      --frappe-path=${FRAPPE_PATH} --no-procfile --no-backups \\
      --skip-redis-config-generation frappe-bench && rm -rf frappe-bench/apps/*/.git
USER frappe
WORKDIR /home/frappe/frappe-bench
"""

ERPNEXT = "https://github.com/frappe/erpnext"
HRMS = "https://github.com/frappe/hrms"
MACRS = "https://${DE_MACRS_PAT}@github.com/desiredeffect/de_macrs.git"


def sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def app(name: str, url: str, ref: str, kind: str = "release-tag", seed: str | None = None) -> dict:
    return {"name": name, "url": url, "ref": ref, "ref_kind": kind, "sha": sha(seed or name + ref)}


def default_apps() -> list[dict[str, Any]]:
    return [
        app("erpnext", ERPNEXT, "v15.17.0"),
        app("hrms", HRMS, "v15.10.0"),
        app("de_macrs", MACRS, "main", "moving-branch", seed="macrs-1"),
    ]


def make_manifest(
    version: str = "v1.1.5",
    created: str = "2026-11-01T10:00:00+00:00",
    *,
    apps: list[dict[str, Any]] | None = None,
    frappe_ref: str = "version-15",
    frappe_seed: str = "frappe-1",
    status: str = "succeeded",
    kind: str = "build",
    rebuild_of: str | None = None,
    containerfile: str | None = CONTAINERFILE,
    python: str = "3.11.6",
    node: str = "20.19.2",
    image_name: str = "desiredeffect/erpnext-custom",
    image_id: str | None = None,
) -> dict[str, Any]:
    apps = default_apps() if apps is None else apps
    frappe = app("frappe", "https://github.com/frappe/frappe", frappe_ref, "release-line", frappe_seed)
    fingerprint = hashlib.sha256(json.dumps([frappe["sha"]] + [a["sha"] for a in apps]).encode()).hexdigest()[
        :16
    ]
    cf: dict[str, Any] = {"path": "/ws/Containerfile", "apps_json_mode": "secret"}
    if containerfile is not None:
        cf["content"] = containerfile
        cf["sha256"] = hashlib.sha256(containerfile.encode()).hexdigest()
    return {
        "schema_version": 1,
        "kind": kind,
        "rebuild_of": rebuild_of,
        "version": version,
        "status": status,
        "error": None if status == "succeeded" else "docker build failed (exit 1): see v.log",
        "image": {
            "name": image_name,
            "tag": version,
            "ref": f"{image_name}:{version}",
            "id": image_id
            if image_id is not None
            else "sha256:" + hashlib.sha256((version + created).encode()).hexdigest(),
            "repo_digests": [],
            "replaced": None,
        },
        "created": created,
        "finished": created.replace(":00+", ":42+"),
        "duration_seconds": 42.0,
        "tools": {
            "docker_client": "20.10.24",
            "docker_server": "20.10.24",
            "builder": "docker build (BuildKit)",
        },
        "containerfile": cf,
        "build_args": {
            "FRAPPE_PATH": frappe["url"],
            "FRAPPE_BRANCH": frappe_ref,
            "PYTHON_VERSION": python,
            "NODE_VERSION": node,
            "CACHE_BUST": fingerprint,
        },
        "frappe": frappe,
        "apps": apps,
        "apps_json_sha256": hashlib.sha256(json.dumps(apps).encode()).hexdigest(),
        "fingerprint": fingerprint,
        "workspace": {"git_commit": None, "dirty": None},
        "leak_scan": {"status": "clean", "findings": [], "seconds": 0.8},
        "log_file": f"{version}.log",
    }


def write(builds: Path, manifest: dict[str, Any], name: str | None = None) -> Path:
    builds.mkdir(parents=True, exist_ok=True)
    path = builds / (name or f"{manifest['version']}.json")
    path.write_text(json.dumps(manifest, indent=2))
    return path


def make_deploy(
    version: str,
    finished: str,
    project: str = "erp",
    host: str = "local",
    result: str = "succeeded",
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "version": version,
        "image": f"desiredeffect/erpnext-custom:{version}",
        "project": project,
        "host": host,
        "user": "ops",
        "started": finished,
        "finished": finished,
        "result": result,
        "sites": [{"site": "a.local", "status": "ok", "failed_patch": None, "backup": "x.sql.gz"}],
        "error": None,
    }


def write_deploy(deploys: Path, record: dict[str, Any]) -> Path:
    deploys.mkdir(parents=True, exist_ok=True)
    stamp = record["finished"].replace(":", "").replace("-", "")[:15]
    path = deploys / f"{stamp}-{record['project']}.json"
    path.write_text(json.dumps(record))
    return path
