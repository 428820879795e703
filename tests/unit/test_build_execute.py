"""build/execute.py: the failure line, the tag given only after the scan and given back on failure."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from frappe_imagekit.build import execute
from tests.support.buildplan import make_plan as _plan


def test_failure_line_picks_the_buildkit_error() -> None:
    log = [
        "#6 [2/2] RUN false",
        "#6 ERROR: executor failed running [/bin/sh -c false]: exit code: 1",
        "------",
        "error: failed to solve: executor failed running [/bin/sh -c false]: exit code: 1",
    ]
    assert execute._failure_line(log).startswith("error: failed to solve")


class _FakeTags:
    """Records what build asks the daemon to tag and untag (the real daemon is in integration)."""

    def __init__(self, current: dict[str, str]) -> None:
        self.current = current  # ref -> image id
        self.calls: list[tuple] = []

    def tag_image(self, image: str, repo: str, tag: str) -> None:
        self.calls.append(("tag", image, f"{repo}:{tag}"))
        self.current[f"{repo}:{tag}"] = self.current.get(image, image)

    def remove_tag(self, ref: str) -> None:
        self.calls.append(("rmi", ref))
        self.current.pop(ref, None)

    def inspect_image(self, ref: str):  # type: ignore[no-untyped-def]
        return {"Id": self.current[ref]} if ref in self.current else None


@pytest.mark.parametrize("old_id", [None, "sha256:old"])
def test_a_failure_after_tagging_gives_the_version_back(tmp_path: Path, monkeypatch, old_id) -> None:
    from frappe_imagekit import dockerapi

    plan = _plan(tmp_path, force=True)
    fake = _FakeTags({plan.ref: old_id} if old_id else {})
    for name in ("tag_image", "remove_tag", "inspect_image"):
        monkeypatch.setattr(dockerapi, name, getattr(fake, name))
    run = execute._Run(datetime.now(UTC), 0.0, old_id=old_id, image_id="sha256:new")
    if old_id:
        run.replaced = execute._keep_old_image(plan, old_id)
    execute._tag_scanned(plan, run)
    assert fake.current[plan.ref] == "sha256:new"
    execute._restore_on_failure(plan, run)  # e.g. SIGTERM while the manifest was written
    assert fake.current.get(plan.ref) == old_id
    assert [ref for ref in fake.current if "-replaced-" in ref] == []
    assert run.tagged is False and run.replaced is None


def test_interrupts_held_delivers_a_signal_after_the_block() -> None:
    import os
    import signal

    from frappe_imagekit.interrupts import interrupts_held, sigterm_as_interrupt

    finished = False
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            finished = True  # the cleanup was not cut short
        time.sleep(1)  # the interrupt arrives here, after the block
    assert finished


@pytest.mark.parametrize("old_id", [None, "sha256:old"])
def test_keeping_replaced_gives_the_tag_back_on_any_failure(tmp_path: Path, monkeypatch, old_id) -> None:
    """The one "replaced image" rule of build and rebuild: a spare tag while building, and the
    version tag back where it was (spare dropped) when anything fails, Ctrl-C included."""
    from frappe_imagekit import dockerapi

    plan = _plan(tmp_path, force=True)
    fake = _FakeTags({plan.ref: old_id} if old_id else {})
    for name in ("tag_image", "remove_tag", "inspect_image"):
        monkeypatch.setattr(dockerapi, name, getattr(fake, name))
    run = execute._Run(datetime.now(UTC), 0.0, old_id=old_id, image_id="sha256:new")
    with pytest.raises(KeyboardInterrupt), execute.keeping_replaced(plan, run):
        spare = [ref for ref in fake.current if "-replaced-" in ref]
        assert spare == ([f"{plan.image_name}:{execute.replaced_tag(plan.tag, old_id)}"] if old_id else [])
        execute._tag_scanned(plan, run)
        raise KeyboardInterrupt
    assert fake.current.get(plan.ref) == old_id
    assert [ref for ref in fake.current if "-replaced-" in ref] == []
    run = execute._Run(datetime.now(UTC), 0.0, old_id=old_id, image_id="sha256:new")
    with execute.keeping_replaced(plan, run):
        execute._tag_scanned(plan, run)
    assert fake.current[plan.ref] == "sha256:new"
    assert run.replaced == (execute.replaced_tag(plan.tag, old_id) if old_id else None)


def test_a_force_build_keeps_an_old_record_whose_image_is_null(tmp_path: Path) -> None:
    """``--force`` moves the old record aside; one with ``"image": null`` (it passes the reader)
    is moved too, its image the spare tag (it once stopped the build: ``**None``)."""
    import json

    from frappe_imagekit.workspace import Workspace

    ws = Workspace.at(tmp_path)
    plan = _plan(tmp_path, force=True)
    ws.builds_dir.mkdir()
    old = ws.builds_dir / f"{plan.record_name}.json"
    old.write_text(
        json.dumps({"schema_version": 1, "version": plan.tag, "status": "succeeded", "image": None})
    )
    run = execute._Run(datetime(2026, 12, 7, 10, 0, tzinfo=UTC), 0.0, replaced="v1.1.5-replaced-0123456789ab")
    execute._retire_previous(ws, plan, run)
    kept = json.loads((ws.builds_dir / f"{plan.record_name}.replaced-20261207T100000Z.json").read_text())
    assert not old.exists() and kept["status"] == "replaced"
    assert kept["image"] == {"tag": run.replaced, "ref": f"{plan.image_name}:{run.replaced}"}
