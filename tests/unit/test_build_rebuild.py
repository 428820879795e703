"""rebuild: drift check against real git remotes (file:// and smart HTTP), plan from a manifest.

No image is built here (tests/integration/test_rebuild.py does that); the daemon lookup of the
target tag is replaced where a test reaches it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from test_history_data import CONTAINERFILE, make_manifest, write

from frappe_imagekit import dockerapi
from frappe_imagekit.build import benchfile, rebuild, tiers
from frappe_imagekit.build.containerfile import default_containerfile
from frappe_imagekit.errors import ConfigError, DriftError, ExitCode, GitError, NotFoundError, TagExistsError
from frappe_imagekit.workspace import Workspace
from tests.support.cli import invoke
from tests.support.githttp import (  # noqa: F401 - fixtures
    GIT_ENV,
    GitHTTPServer,
    Remote,
    git,
    git_identity,
    make_remote,
)
from tests.support.workspace import CANARY, make_workspace

IMAGE = "ik-test/rebuild-unit"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Remote]:
    """The remotes, made once per module (git is slow on a busy machine); tests get copies."""
    root = tmp_path_factory.mktemp("remotes")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        return {
            "frappe": make_remote(root, "frappe", tags=("v15.40.0",), annotated=(), branches=("version-15",)),
            "erpnext": make_remote(root, "erpnext"),
            "de_macrs": make_remote(root, "de_macrs", tags=("v0.0.4",), annotated=("v0.0.4",), branches=()),
        }


@pytest.fixture
def remotes(tmp_path: Path, template: dict[str, Remote], git_identity) -> dict[str, Remote]:  # noqa: F811
    root = tmp_path / "remotes"
    shutil.copytree(template["frappe"].bare.parent, root, symlinks=True)
    copies = {}
    for name, remote in template.items():
        copy = copy_remote(remote, root)
        git("remote", "set-url", "origin", str(copy.bare), cwd=copy.work)
        copies[name] = copy
    return copies


def copy_remote(remote: Remote, root: Path) -> Remote:
    return Remote(
        bare=root / remote.bare.name,
        work=root / remote.work.name,
        tags=dict(remote.tags),
        branches=dict(remote.branches),
        annotated=set(remote.annotated),
    )


@pytest.fixture
def server(remotes):
    with GitHTTPServer(remotes["frappe"].bare.parent, tokens=[CANARY]) as srv:
        yield srv


@pytest.fixture
def no_image(monkeypatch) -> None:
    monkeypatch.setattr(dockerapi, "inspect_image", lambda ref: None)


def _pin(name: str, url: str, ref: str, sha: str, kind: str = "release-tag") -> dict:
    return {"name": name, "url": url, "ref": ref, "ref_kind": kind, "sha": sha}


def _workspace(tmp_path: Path, remotes, server, *, token: str = CANARY) -> Workspace:
    private_url = server.url("de_macrs.git", "${DE_MACRS_PAT}")
    apps = [
        {"url": remotes["erpnext"].url, "branch": "v15.17.0"},
        {"url": private_url, "branch": "v0.0.4"},
    ]
    root = make_workspace(
        tmp_path / "ws",
        env={
            "FRAPPE_PATH": remotes["frappe"].url,
            "IMAGE_NAME": IMAGE,
            "DE_MACRS_PAT": token,
            "CONTAINERFILE": "Containerfile",
        },
        apps=apps,
    )
    (root / "Containerfile").write_text(CONTAINERFILE)  # the file the recorded build was built from
    ws = Workspace.at(root)
    frappe = remotes["frappe"]
    manifest = make_manifest(
        "v1.0.0",
        apps=[
            _pin("erpnext", remotes["erpnext"].url, "v15.17.0", remotes["erpnext"].tags["v15.17.0"]),
            # as build records it: the URL without its ${VAR}@ part
            _pin("de_macrs", server.url("de_macrs.git"), "v0.0.4", remotes["de_macrs"].tags["v0.0.4"]),
        ],
        image_name=IMAGE,
    )
    manifest["frappe"] = _pin(
        "frappe", frappe.url, "version-15", frappe.branches["version-15"], "release-line"
    )
    manifest["build_args"]["FRAPPE_PATH"] = frappe.url
    write(ws.builds_dir, manifest)
    return ws


def _move_tag(remote: Remote, tag: str) -> tuple[str, str]:
    """Point ``tag`` at a new commit on the remote; return (old sha, new sha)."""
    old = remote.tags[tag]
    new = remote.commit(f"after {tag}")
    git("tag", "-f", tag, new, cwd=remote.work)
    git("push", "-q", "-f", "origin", f"refs/tags/{tag}", cwd=remote.work)
    remote.tags[tag] = new
    return old, new


def test_no_drift_when_every_ref_still_points_to_its_commit(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    plan = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
    assert [(p.name, p.status) for p in plan.drift.pins] == [
        ("frappe", "same"),
        ("erpnext", "same"),
        ("de_macrs", "same"),
    ]
    # the private app's URL got its ${VAR} back from the current apps.json
    assert plan.drift.pins[2].token_var == "DE_MACRS_PAT"
    build = plan.build
    assert (build.kind, build.rebuild_of, build.tag, build.ref) == (
        "rebuild",
        "v1.0.0",
        "v1.0.0",
        f"{IMAGE}:v1.0.0",
    )
    assert build.containerfile.text == CONTAINERFILE
    assert build.containerfile.path == (ws.root / "Containerfile").resolve()  # the workspace file vouches
    assert build.build_args["PYTHON_VERSION"] == "3.11.6"
    assert build.build_args["FRAPPE_BRANCH"] == "version-15"
    assert build.build_args["CACHE_BUST"] == build.fingerprint
    assert [a["sha"] for a in build.apps] == [
        remotes["erpnext"].tags["v15.17.0"],
        remotes["de_macrs"].tags["v0.0.4"],
    ]
    injected = json.loads(build.injected.text)
    assert CANARY in injected[1]["url"] and injected[1]["branch"] == "v0.0.4"
    assert CANARY not in build.apps_json_text and "${DE_MACRS_PAT}" in build.apps_json_text
    text = json.dumps(plan.to_dict())
    assert CANARY not in text and build.redactor.redact(CANARY) == "***"
    assert plan.rebuild_id.startswith("v1.0.0.rebuild-")


def test_a_rebuild_is_a_variant_plan_whose_labels_follow_its_final_values(
    tmp_path, remotes, server, no_image
):
    """rebuild never edits build's plan: its plan is a new value naming its own record, with the
    version of the original, and labels computed from the recorded build args (issue 14)."""
    ws = _workspace(tmp_path, remotes, server)
    plan = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(tag="v1.0.0-rebuilt"))
    variant = plan.build
    assert (variant.version, variant.record_name, variant.tag) == (
        "v1.0.0",
        plan.rebuild_id,
        "v1.0.0-rebuilt",
    )
    assert variant.labels["org.opencontainers.image.version"] == "v1.0.0"
    assert (
        variant.labels["io.imagekit.fingerprint"] == variant.fingerprint == variant.build_args["CACHE_BUST"]
    )
    assert [d["name"] for d in variant.drift or []] == ["frappe", "erpnext", "de_macrs"]
    assert variant.options.force is False
    forced = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(force=True, tag="v1.0.0-x"))
    assert forced.build.force is True  # build's own --force rule keeps the replaced image


def test_moved_tag_is_refused_naming_the_app_and_both_shas(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    old, new = _move_tag(remotes["erpnext"], "v15.17.0")
    with pytest.raises(DriftError) as caught:
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
    assert caught.value.exit_code == ExitCode.DRIFT
    assert f"erpnext: v15.17.0 moved from {old[:7]} to {new[:7]}" in caught.value.message
    assert "--allow-drift" in caught.value.message and "frappe" not in caught.value.message


def test_allow_drift_builds_the_current_commit(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    _old, new = _move_tag(remotes["erpnext"], "v15.17.0")
    plan = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(allow_drift=True))
    assert [p.name for p in plan.drift.drifted] == ["erpnext"]
    assert plan.build.apps[0]["sha"] == new
    assert plan.build.build_args["CACHE_BUST"] != plan.original["build_args"]["CACHE_BUST"]


def test_a_tag_at_the_recorded_commit_replaces_a_moved_branch(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    frappe = remotes["frappe"]
    recorded = frappe.branches["version-15"]
    git("tag", "v15.40.1", recorded, cwd=frappe.work)
    git("push", "-q", "origin", "refs/tags/v15.40.1", cwd=frappe.work)
    frappe.commit("hotfix", branch="version-15")  # the release line moved on
    plan = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
    pin = plan.drift.pins[0]
    assert (pin.status, pin.use_ref) == ("tag", "v15.40.1")
    assert pin.message == (
        f"frappe: version-15 moved, but tag v15.40.1 still points to {recorded[:7]}: using v15.40.1"
    )
    assert plan.build.build_args["FRAPPE_BRANCH"] == "v15.40.1"
    assert plan.build.frappe["sha"] == recorded and plan.build.frappe["ref_kind"] == "release-tag"
    assert plan.build.build_args["CACHE_BUST"] == plan.build.fingerprint


def test_deleted_ref_without_a_tag_cannot_be_rebuilt_even_with_allow_drift(
    tmp_path, remotes, server, no_image
):
    ws = _workspace(tmp_path, remotes, server)
    erpnext = remotes["erpnext"]
    git("push", "-q", "origin", ":refs/tags/v15.17.0", cwd=erpnext.work)
    with pytest.raises(DriftError, match="erpnext: v15.17.0 no longer exists on the remote"):
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(allow_drift=True))


def test_expired_token_is_one_clear_git_error(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server, token="ghp_expiredEXPIRED0123456789")
    with pytest.raises(GitError) as caught:
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
    assert caught.value.exit_code == ExitCode.GIT
    assert "cannot check de_macrs for drift" in caught.value.message
    assert "DE_MACRS_PAT" in caught.value.message and "expired" in caught.value.message
    assert "ghp_expired" not in caught.value.message


def test_remote_gone_is_one_clear_git_error(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    shutil.rmtree(remotes["erpnext"].bare)
    with pytest.raises(GitError, match="cannot check erpnext for drift: .*erpnext"):
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())


def test_unknown_version_names_the_nearest(tmp_path, remotes, server):
    ws = _workspace(tmp_path, remotes, server)
    with pytest.raises(NotFoundError, match=r"unknown version v1\.0\.9 \(nearest: v1\.0\.0\)"):
        rebuild.plan_rebuild(ws, "v1.0.9", rebuild.RebuildOptions())


def test_manifest_without_stored_containerfile(tmp_path, remotes, server):
    ws = _workspace(tmp_path, remotes, server)
    path = ws.builds_dir / "v1.0.0.json"
    data = json.loads(path.read_text())
    del data["containerfile"]["content"]
    path.write_text(json.dumps(data))
    with pytest.raises(NotFoundError, match="has no stored copy of its Containerfile"):
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())


def test_existing_image_is_refused_unless_force_or_tag(tmp_path, remotes, server, monkeypatch):
    ws = _workspace(tmp_path, remotes, server)
    original_id = json.loads((ws.builds_dir / "v1.0.0.json").read_text())["image"]["id"]
    seen = []

    def inspect(ref):
        seen.append(ref)
        return {"Id": original_id} if ref.endswith(":v1.0.0") else None

    monkeypatch.setattr(dockerapi, "inspect_image", inspect)
    with pytest.raises(TagExistsError) as caught:
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
    assert caught.value.exit_code == ExitCode.TAG_EXISTS
    short = original_id.removeprefix("sha256:")[:12]
    assert caught.value.message.startswith(f"{IMAGE}:v1.0.0 still exists (image {short}, the original build)")
    assert f"keep the old image as {IMAGE}:v1.0.0-replaced-{short}." in caught.value.message
    assert "--tag v1.0.0-rebuilt" in caught.value.message and "--force" in caught.value.message
    forced = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(force=True))
    assert forced.existing_image_id == original_id
    beside = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(tag="v1.0.0-rebuilt"))
    assert beside.ref == f"{IMAGE}:v1.0.0-rebuilt" and beside.existing_image_id is None


def test_invalid_tag_is_a_usage_error(tmp_path, remotes, server):
    ws = _workspace(tmp_path, remotes, server)
    result = invoke("rebuild", "v1.0.0", "--tag", "-bad tag", "-w", str(ws.root))
    assert result.exit_code == 2 and "is not a valid docker tag" in result.stderr


def test_cli_drift_refusal_exit_11(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    old, new = _move_tag(remotes["de_macrs"], "v0.0.4")
    result = invoke("rebuild", "v1.0.0", "-w", str(ws.root))
    assert result.exit_code == 11
    assert f"de_macrs: v0.0.4 moved from {old[:7]} to {new[:7]}" in result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_cli_dry_run_prints_the_plan_and_tag_note(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    erpnext = remotes["erpnext"]
    recorded = erpnext.tags["v15.17.0"]
    git("tag", "v15.17.0-pinned", recorded, cwd=erpnext.work)
    git("push", "-q", "origin", "refs/tags/v15.17.0-pinned", cwd=erpnext.work)
    _move_tag(erpnext, "v15.17.0")
    result = invoke("rebuild", "v1.0.0", "--dry-run", "--json", "-w", str(ws.root))
    assert result.exit_code == 0, result.stderr
    assert "note: erpnext: v15.17.0 moved, but tag v15.17.0-pinned still points to" in result.stderr
    data = json.loads(result.stdout)
    assert data["rebuild_of"] == "v1.0.0" and data["image"] == f"{IMAGE}:v1.0.0"
    assert data["plan"]["kind"] == "rebuild" and data["plan"]["apps"][0]["ref"] == "v15.17.0-pinned"
    assert "--secret" in data["plan"]["command"]
    assert CANARY not in result.stdout + result.stderr
    assert not list(ws.builds_dir.glob("*.rebuild-*"))  # a dry run records nothing


def test_compare_with_original() -> None:
    original = make_manifest("v1.0.0")
    same = {**make_manifest("v1.0.0", "2026-11-21T06:00:00+00:00"), "kind": "rebuild"}
    cmp = rebuild.compare_with_original(original, same)
    assert cmp.identical and cmp.to_dict()["same_shas"] is True
    other = make_manifest("v1.0.0", frappe_seed="moved", python="3.11.9")
    cmp = rebuild.compare_with_original(original, other)
    assert (cmp.same_shas, cmp.same_args, cmp.same_containerfile, cmp.same_apps) == (
        False,
        False,
        True,
        True,
    )
    assert not cmp.identical
    # under --trust-containerfile "same" compares with an unverified text: never a match
    # (a real v15 lab rebuild of an edited stored text printed "The rebuild matches", 2026-12-07)
    trusted = rebuild.compare_with_original(original, same, "the stored text is not imagekit's")
    assert trusted.same_containerfile and not trusted.identical
    assert trusted.to_dict()["trusted_containerfile"] == "the stored text is not imagekit's"


# -- issue 8: a manifest cannot choose where a token goes, nor inject into git ------------------


def _tamper(ws: Workspace, **changes) -> None:
    path = ws.builds_dir / "v1.0.0.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        manifest["apps"][1][key] = value
    path.write_text(json.dumps(manifest))


def test_cli_dry_run_sends_no_token_to_a_url_written_into_the_manifest(tmp_path, remotes, server, no_image):
    from tests.support.githttp import AuthCaptureServer

    ws = _workspace(tmp_path, remotes, server)
    with AuthCaptureServer() as attacker:
        _tamper(ws, url=attacker.url("x.git", "${DE_MACRS_PAT}"))
        result = invoke("rebuild", "v1.0.0", "--dry-run", "--json", "-w", str(ws.root))
    assert result.exit_code == int(ExitCode.GIT), result.stderr
    assert "cannot check de_macrs for drift" in result.stderr
    assert attacker.requests and not attacker.saw_secret(CANARY)
    assert CANARY not in result.stdout + result.stderr
    assert not list(ws.builds_dir.glob("*.rebuild-*"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sha", "--upload-pack=touch {marker};git-upload-pack", "apps[1].sha is not a commit SHA"),
        ("url", "--upload-pack=touch {marker};git-upload-pack", "apps[1].url cannot start with '-'"),
        ("url", "http://127.0.0.1:1/${{DE_MACRS_PAT}}/x.git", "placeholder outside the user part"),
        ("ref", "--upload-pack=touch {marker}", "is not a valid git branch or tag name"),
        ("ref", ["v0.0.4"], "apps[1].ref must be a string, not list"),
    ],
)
def test_cli_dry_run_refuses_crafted_manifest_values(
    tmp_path, remotes, server, no_image, field, value, message
):
    marker = tmp_path / "PWNED"
    ws = _workspace(tmp_path, remotes, server)
    _tamper(ws, **{field: value.format(marker=marker) if isinstance(value, str) else value})
    result = invoke("rebuild", "v1.0.0", "--dry-run", "-w", str(ws.root))
    # the manifest reader is the boundary: a value that could reach git makes the file unusable
    assert result.exit_code == int(ExitCode.NOT_FOUND), result.stderr
    assert message in result.stderr and "v1.0.0.json cannot be read (" in result.stderr
    assert "Traceback" not in result.stderr and CANARY not in result.stdout + result.stderr
    assert not marker.exists() and server.requests == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("--upload-pack=touch /tmp/x", "cannot start with '-'"),
        ("https://${DE_MACRS_PAT}@github.com/frappe/frappe", "FRAPPE_PATH holds a credential"),
        ("http://attacker.example/frappe", "FRAPPE_PATH uses plain http"),
    ],
)
def test_cli_dry_run_refuses_a_crafted_frappe_path_build_arg(
    tmp_path, remotes, server, no_image, value, message
):
    ws = _workspace(tmp_path, remotes, server)
    path = ws.builds_dir / "v1.0.0.json"
    manifest = json.loads(path.read_text())
    manifest["build_args"]["FRAPPE_PATH"] = value
    path.write_text(json.dumps(manifest))
    result = invoke("rebuild", "v1.0.0", "--dry-run", "-w", str(ws.root))
    assert result.exit_code == int(ExitCode.VALIDATION), result.stderr
    assert message in result.stderr and CANARY not in result.stdout + result.stderr


# -- issue 19 item 5: the stored Containerfile runs with the tokens mounted ---------------------
# Built only when imagekit regenerates the same text from the recorded plan, or the workspace file
# .env's CONTAINERFILE names has its sha256, or with --trust-containerfile.

# what an attacker with commit access adds: the git secret, rot13'd past the leak scan
CRAFTED = "RUN --mount=type=secret,id=apps_json,target=/a.json tr A-Za-z N-ZA-Mn-za-m < /a.json > /x\n"


def _edit(ws: Workspace, change) -> Path:
    path = ws.builds_dir / "v1.0.0.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def _craft_content(manifest: dict) -> None:
    """The stored text gets a step; the recorded sha256 is made to match, as an attacker would."""
    cf = manifest["containerfile"]
    cf["content"] += CRAFTED
    cf["sha256"] = hashlib.sha256(cf["content"].encode()).hexdigest()


def _make_exact(manifest: dict) -> None:
    """The manifest as an exact build records it: generated text, the system tier."""
    shipped = benchfile.split_template(default_containerfile().read_text())
    text = benchfile.render([a["name"] for a in manifest["apps"]], shipped)
    manifest["containerfile"] = {"path": None, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                                 "content": text, "apps_json_mode": "exact"}  # fmt: skip
    tier = tiers.system_tier(shipped, {"IMAGE_NAME": IMAGE, "PYTHON_VERSION": "3.11.6"})
    manifest["base_tier"] = {**tier.to_dict(), "built": True}
    manifest["build_args"] = {"IMAGEKIT_BASE": tier.ref}


def test_a_users_containerfile_edited_in_the_manifest_is_refused_before_any_remote(
    tmp_path, remotes, server, no_image
):
    ws = _workspace(tmp_path, remotes, server)
    _edit(ws, _craft_content)
    result = invoke("rebuild", "v1.0.0", "-w", str(ws.root))
    assert result.exit_code == int(ExitCode.VALIDATION), result.stderr
    message = " ".join(result.stderr.split())
    assert "builds/v1.0.0.json stores its own Containerfile" in message
    assert f"CONTAINERFILE {(ws.root / 'Containerfile').resolve()} has another sha256" in message
    assert "pass --trust-containerfile to build it as stored" in message
    assert server.requests == [] and not list(ws.builds_dir.glob("*.rebuild-*"))
    assert "Traceback" not in result.stderr and CANARY not in result.stdout + result.stderr

    trusted = invoke("rebuild", "v1.0.0", "-w", str(ws.root), "--trust-containerfile", "--dry-run", "--json")
    assert trusted.exit_code == 0, trusted.stderr
    assert "warning: --trust-containerfile: building the stored text anyway" in trusted.stderr
    assert CRAFTED.strip() in trusted.stderr  # shown whole before anything runs
    data = json.loads(trusted.stdout)
    assert "stores its own Containerfile" in data["trusted_containerfile"]
    assert data["plan"]["containerfile"] is None  # the stored copy, as trusted
    assert CANARY not in trusted.stdout + trusted.stderr
    shown = invoke("rebuild", "v1.0.0", "-w", str(ws.root), "--trust-containerfile", "--dry-run")
    assert "Containerfile: the copy stored in the manifest (secret mode)" in shown.stdout


def test_without_containerfile_in_env_a_stored_users_file_needs_trust(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    ws.env_file.write_text(ws.env_file.read_text().replace("CONTAINERFILE=Containerfile\n", ""))
    with pytest.raises(ConfigError, match=r"CONTAINERFILE is not set in \.env\): set CONTAINERFILE"):
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
    plan = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(trust_containerfile=True))
    assert plan.trusted is not None and plan.build.containerfile.path is None


def test_imagekit_s_own_text_is_regenerated_and_compared(tmp_path, remotes, server, no_image):
    ws = _workspace(tmp_path, remotes, server)
    _edit(ws, _make_exact)
    plan = rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions(dry_run=True))
    assert plan.trusted is None and plan.build.exact is not None
    assert benchfile.is_generated(plan.build.containerfile.text)

    def edit_step(manifest: dict) -> None:
        cf = manifest["containerfile"]
        cf["content"] = cf["content"].replace(
            "bench build --app", "cat /run/secrets/imagekit_git; bench build --app", 1
        )

    _edit(ws, edit_step)
    result = invoke("rebuild", "v1.0.0", "-w", str(ws.root), "--dry-run")
    assert result.exit_code == int(ExitCode.VALIDATION), result.stderr
    message = " ".join(result.stderr.split())
    assert (
        "builds/v1.0.0.json holds a containerfile.content that is not what this imagekit generates" in message
    )
    assert "cat /run/secrets/imagekit_git" in message and "--trust-containerfile" in message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda t: t.update(containerfile=t["containerfile"] + "RUN cp /bin/sh /usr/bin/git\n"),
         "base_tier.containerfile"),
        (lambda t: t.update(key="0" * 16), "base_tier"),
        (lambda t: t.update(ref="attacker/own:tier"), "base_tier"),
        (lambda t: t.update(build_args=["PYTHON_VERSION"]), "base_tier.build_args"),
    ],
    ids=["tier text", "tier key", "tier image", "tier args not an object"],
)  # fmt: skip
def test_a_crafted_system_tier_is_refused(tmp_path, remotes, server, no_image, change, field) -> None:
    ws = _workspace(tmp_path, remotes, server)
    _edit(ws, _make_exact)
    _edit(ws, lambda m: change(m["base_tier"]))
    with pytest.raises(ConfigError, match=f"holds a {field} that is not what this imagekit generates"):
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
    assert server.requests == []


@pytest.mark.parametrize("arg", ["BUILDKIT_SYNTAX", "HTTPS_PROXY", "http_proxy"])
def test_build_args_docker_obeys_undeclared_are_refused(tmp_path, remotes, server, no_image, arg) -> None:
    ws = _workspace(tmp_path, remotes, server)
    _edit(ws, lambda m: m["build_args"].update({arg: "http://127.0.0.1:9/x"}))
    with pytest.raises(ConfigError, match=f"build args {arg} are not declared by its Containerfile"):
        rebuild.plan_rebuild(ws, "v1.0.0", rebuild.RebuildOptions())
