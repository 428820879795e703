"""build/tiers.py: the tiers as a list, each built from a small request, recorded as base_tier."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from frappe_imagekit import dockerapi, dockercli
from frappe_imagekit.build import benchfile, tiers
from frappe_imagekit.build.containerfile import default_containerfile
from frappe_imagekit.dockercli import BUILDKIT, DockerCli
from frappe_imagekit.errors import ConfigError, DockerError

ENV = {"IMAGE_NAME": "acme/erp", "PYTHON_VERSION": "3.11.6", "NODE_VERSION": "20.19.2"}
CLI = DockerCli("/usr/bin/docker", "20.10.24+dfsg1", BUILDKIT)


def _template() -> benchfile.Template:
    return benchfile.split_template(default_containerfile().read_text())


def test_the_tier_key_follows_its_text_and_versions_not_the_apps() -> None:
    env = {"IMAGE_NAME": "acme/erp", "PYTHON_VERSION": "3.11.6", "NODE_VERSION": "20.19.2"}
    first = tiers.system_tier(_template(), env)
    assert first.ref == f"acme/erp:base-{first.key}" and len(first.key) == 16
    assert first.build_args == {"PYTHON_VERSION": "3.11.6", "NODE_VERSION": "20.19.2"}
    assert tiers.system_tier(_template(), {**env, "DE_SITE_VERSION": "v9"}).key == first.key
    assert tiers.system_tier(_template(), {**env, "NODE_VERSION": "24.12.0"}).key != first.key
    other = benchfile.Template(_template().base.replace("curl git", "curl git htop"), "", "")
    assert tiers.system_tier(other, env).key != first.key
    with pytest.raises(ConfigError):
        tiers.system_tier(_template(), {**env, "IMAGE_NAME": "Bad Name"})


def test_an_exact_build_plans_its_tiers_in_order_and_builds_from_the_last() -> None:
    planned = tiers.plan_tiers(_template(), ENV)
    assert [tier.name for tier in planned] == ["system"]
    assert tiers.top(planned) is planned[-1] and tiers.system(planned) is planned[0]
    deps = tiers.Tier("acme/erp:deps-0", "0", "FROM x\n", {}, name="dependencies")
    assert tiers.top((*planned, deps)) is deps and tiers.system((*planned, deps)) is planned[0]


def test_the_manifest_records_the_system_tier_as_base_tier_and_reads_it_back() -> None:
    tier = tiers.system_tier(_template(), ENV)
    tier.built = True
    record = tiers.to_manifest((tier,))
    assert list(record) == ["ref", "key", "built", "containerfile", "build_args"]  # the manifest's order
    assert record == {"ref": tier.ref, "key": tier.key, "built": True, "containerfile": tier.text,
                      "build_args": tier.build_args}  # fmt: skip
    back = tiers.from_manifest(json.loads(json.dumps({"base_tier": record})))
    assert back is not None and [(t.ref, t.key, t.text, t.build_args) for t in back] == [
        (tier.ref, tier.key, tier.text, tier.build_args)
    ]
    assert back[0].built is None  # a recorded tier is not yet known to exist here
    assert tiers.from_manifest({"base_tier": None}) is None and tiers.from_manifest({}) is None
    with pytest.raises(ConfigError, match="no base tier Containerfile"):
        tiers.from_manifest({"base_tier": {**record, "containerfile": "FROM attacker\n"}})
    with pytest.raises(ConfigError, match=r"base_tier.build_args is not an object: restore the manifest"):
        tiers.from_manifest({"base_tier": {**record, "build_args": ["PYTHON_VERSION"]}})


class _FakeDocker:
    """The daemon's images and the build argv each tier ran (the real daemon is in integration)."""

    def __init__(self, present: set[str], code: int = 0) -> None:
        self.present, self.code = present, code
        self.builds: list[tuple[list[str], dict[str, str], str]] = []

    def image_exists(self, ref: str) -> bool:
        return ref in self.present

    def run_build(
        self, argv: list[str], env: Mapping[str, str], on_line: Callable[[str], None], on_start: object = None
    ) -> int:
        containerfile = Path(argv[argv.index("--file") + 1])
        self.builds.append((argv, dict(env), containerfile.read_text()))
        on_line("#1 building")
        return self.code


def _request(tmp_path: Path, **extra: object) -> tiers.TierRequest:
    fields: dict[str, object] = {"cli": CLI, "context": tmp_path, "folder": tmp_path, "stem": "v1.0.0",
                                 "env": {"CA": "public certs"}} | extra  # fmt: skip
    return tiers.TierRequest(**fields)  # type: ignore[arg-type]


def test_tiers_are_built_in_order_from_the_request_alone_and_reused_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tiers.system_tier(_template(), ENV)
    deps = tiers.Tier(
        "acme/erp:deps-1234", "1234", "FROM " + system.ref + "\n", {"X": "1"}, name="dependencies"
    )
    fake = _FakeDocker(present={deps.ref})
    monkeypatch.setattr(dockerapi, "image_exists", fake.image_exists)
    monkeypatch.setattr(dockercli, "run_build", fake.run_build)
    lines: list[str] = []
    request = _request(tmp_path, network="host", secrets=(("ca_certs", "IMAGEKIT_CA_CERTS"),))
    tiers.ensure_tiers((system, deps), request, lines.append)
    assert (system.built, deps.built) == (True, False) and lines == ["#1 building"]
    [(argv, env, text)] = fake.builds
    assert text == system.text and env == {"CA": "public certs"}
    assert (
        argv[argv.index("--tag") + 1] == system.ref
        if "--tag" in argv
        else argv[argv.index("-t") + 1] == system.ref
    )
    assert "io.imagekit.base-key=" + system.key in argv and "id=ca_certs,env=IMAGEKIT_CA_CERTS" in argv
    assert argv[argv.index("--network") + 1] == "host" and "PYTHON_VERSION=3.11.6" in argv
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # its Containerfile and iidfile are gone


def test_a_failed_tier_build_names_the_tier_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tiers.system_tier(_template(), ENV)
    fake = _FakeDocker(present=set(), code=17)
    monkeypatch.setattr(dockerapi, "image_exists", fake.image_exists)
    monkeypatch.setattr(dockercli, "run_build", fake.run_build)
    with pytest.raises(
        DockerError, match=f"docker build of the system tier {system.ref} failed \\(exit 17\\)"
    ):
        tiers.ensure_tiers((system,), _request(tmp_path), lambda line: None)
    assert system.built is None and list(tmp_path.iterdir()) == []
