"""benchfile (the generated Containerfile, pure) and build/exact.py's pure parts, plus the plan of an
exact build: text compared as text, hostile names, URLs, refs and SHAs refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from frappe_imagekit import process
from frappe_imagekit.appsjson import inject
from frappe_imagekit.build import benchfile, layers, tiers
from frappe_imagekit.build import exact as exactbuild
from frappe_imagekit.build import plan as build
from frappe_imagekit.build.containerfile import default_containerfile, parse_containerfile
from frappe_imagekit.build.plan import BuildOptions
from frappe_imagekit.check import Secrets
from frappe_imagekit.errors import ConfigError
from frappe_imagekit.redact import Redactor
from frappe_imagekit.workspace import Workspace
from tests.support.buildplan import APPS, APPS_JSON, CANARY, CLI, ENV, FRAPPE
from tests.support.buildplan import make_plan as _plan

STEPS = Path(__file__).resolve().parents[1] / "fixtures" / "benchfile" / "erpnext-de_macrs.steps"


def _template() -> benchfile.Template:
    return benchfile.split_template(default_containerfile().read_text())


def _render(*names: str) -> str:
    return benchfile.render(list(names), _template())


# ---------------------------------------------------------------- the generated text


def test_generated_files_are_the_production_file_cut_into_a_tier_and_the_bench_steps() -> None:
    static = default_containerfile().read_text()
    template = _template()
    text, tier = _render("erpnext", "de_macrs"), benchfile.render_tier(template)
    assert static.startswith("# Production Containerfile") and template.base.startswith("\n# Defaults are")
    assert template.base.strip() in static and template.builder.strip() in static
    assert static.endswith(template.tail)
    # the tier is the base stage as written; the bench file starts FROM the tier's image
    assert tier == benchfile.TIER_MARK + "\n" + tier.split("\n", 1)[1] and tier.endswith(template.base)
    final = layers.final_stage(["frappe", "erpnext", "de_macrs"], template.tail, benchfile.HELPER)
    assert text.startswith(benchfile.MARK + "\n") and text.endswith(final)
    assert "ARG IMAGEKIT_BASE\nFROM ${IMAGEKIT_BASE} AS base\n\n" + template.builder in text
    # the steps between the builder's compilers and the final stage, exactly (reviewed text)
    steps = text[text.index(template.builder) + len(template.builder) : -len(final)]
    assert steps == STEPS.read_text()
    # the final stage is the production file's, its one bench COPY made one layer per repository
    head, _, rest = template.tail.partition(layers.COPY_LINE)
    assert final.startswith(head) and final.endswith(rest) and layers.COPY_LINE not in final


def test_generated_files_keep_the_upstream_contract() -> None:
    tier = parse_containerfile(benchfile.render_tier(_template()), None)
    assert [(s.name, s.base) for s in tier.stages] == [
        ("base", "${PYTHON_IMAGE}:${PYTHON_VERSION}-slim-${DEBIAN_BASE}")
    ]
    assert {m.id for m in tier.secret_mounts} == {"ca_certs"}
    for name in ("PYTHON_VERSION", "NODE_VERSION", "CA_CERTS_SHA256"):
        assert name in tier.declared_args
    assert "gunicorn-start.sh" in tier.text and "imagekit-entrypoint.sh" in tier.text
    cf = parse_containerfile(_render("erpnext", "hrms"), None)
    assert [(s.name, s.base) for s in cf.stages] == [
        ("base", "${IMAGEKIT_BASE}"),
        ("builder", "base"),
        ("bench-frappe", "builder"),
        ("bench-erpnext", "bench-frappe"),
        ("bench-hrms", "bench-erpnext"),
        ("backend", "base"),
    ]
    assert {m.id for m in cf.secret_mounts} == {"imagekit_git"}
    assert "apps_json" not in cf.text and "bench init --apps_path" not in cf.text
    assert "SETUPTOOLS_SPEC" in cf.declared_args and "PYTHON_VERSION" not in cf.declared_args
    final = cf.stage_instructions(cf.stages[-1])
    assert [i.keyword for i in final] == [
        "FROM",
        "USER",
        "RUN",
        "RUN",
        "RUN",
        "WORKDIR",
        "VOLUME",
        "ENTRYPOINT",
        "CMD",
    ]
    # one layer per repository, in order, each from its own step's stage
    assert [(i.flags["mount"], i.command.split()[2:4]) for i in final if i.keyword == "RUN"] == [
        ([f"type=bind,from=bench-{name},source=/,target={layers.STEP_ROOT}"], ["apply", name])
        for name in ("frappe", "erpnext", "hrms")
    ]
    assert "gunicorn-start.sh" in final[-1].value and "imagekit-entrypoint.sh" in final[-2].value
    assert 'pip install --quiet "${SETUPTOOLS_SPEC}"' in cf.text
    assert "--mount=type=cache,target=/home/frappe/.cache/uv,uid=1000,gid=1000" in cf.text


def test_each_app_step_is_keyed_by_its_own_commit_arg_declared_just_before_it() -> None:
    cf = parse_containerfile(_render("erpnext", "hrms", "de_macrs"), None)
    builder = [i for stage in cf.stages[1:-1] for i in cf.stage_instructions(stage) if i.keyword != "FROM"]
    order = [(i.keyword, i.value.split("=")[0] if i.keyword == "ARG" else i.command[:60]) for i in builder]
    runs = [n for n, (kw, _v) in enumerate(order) if kw == "RUN"]
    for name in ("frappe", "erpnext", "hrms", "de_macrs"):
        arg = order.index(("ARG", f"IMAGEKIT_SHA_{name.upper()}"))
        step = next(n for n in runs if n > arg)
        assert f"imagekit-git fetch {name} " in builder[step].command
        assert f'"${{IMAGEKIT_SHA_{name.upper()}}}"' in builder[step].command
        assert f"imagekit-git seal {name}" in builder[step].command  # .git gone in the same RUN
        # the step lists what it changed: marked before bench touches the bench, listed last
        command = builder[step].command
        assert command.index(f"imagekit-git mark {name}") < command.index("bench ", command.index("mark"))
        assert command.endswith(f"imagekit-git layer {name}")
        # nothing between the ARG and its step but the ref ARG: earlier steps do not see it
        assert [kw for kw, _v in order[arg + 1 : step]] == ["ARG"]
    steps = [builder[n].command for n in runs]
    assert ["bench init" in s for s in steps].count(True) == 1
    assert [s.split("bench build --app ")[1].split()[0] for s in steps if "bench build --app" in s] == [
        "erpnext", "hrms", "de_macrs",
    ]  # fmt: skip


def test_the_generated_text_holds_no_url_commit_or_ref() -> None:
    text = _render("erpnext", "de_macrs")
    assert "github.com" not in text.split("FROM base AS builder")[1]
    assert "version-15" not in text.split("FROM base AS builder")[1].replace("ARG FRAPPE_BRANCH", "")
    assert "${DE_MACRS_PAT}" not in text and "a" * 40 not in text


@pytest.mark.parametrize(
    "names",
    [["../etc"], ["hrms;rm -rf /"], ["HRMS"], ["$(id)"], ["frappe"], ["hrms", "hrms"], ["a b"], [""], ["-x"]],
)
def test_hostile_or_duplicate_app_names_are_refused(names: list[str]) -> None:
    with pytest.raises(ConfigError):
        _render(*names)


def test_split_template_refuses_a_file_without_its_stages() -> None:
    with pytest.raises(ValueError):
        benchfile.split_template("FROM x\nRUN true\n")


# ---------------------------------------------------------------- build args and the secret


def test_commit_args_name_each_repository() -> None:
    assert benchfile.commit_args(FRAPPE, APPS) == {
        "IMAGEKIT_SHA_FRAPPE": "a" * 40, "IMAGEKIT_REF_FRAPPE": "version-15",
        "IMAGEKIT_SHA_ERPNEXT": "b" * 40, "IMAGEKIT_REF_ERPNEXT": "v15.17.0",
        "IMAGEKIT_SHA_DE_MACRS": "c" * 40, "IMAGEKIT_REF_DE_MACRS": "v0.0.4",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [("sha", "abc"), ("sha", "A" * 40), ("sha", None), ("ref", "--upload-pack=touch /x"), ("ref", "a b"),
     ("ref", "x\ny"), ("ref", "a..b"), ("ref", "-b")],
)  # fmt: skip
def test_commit_args_refuse_hostile_refs_and_shas(field: str, value: object) -> None:
    with pytest.raises(ConfigError):
        benchfile.commit_args(FRAPPE, [{**APPS[0], field: value}])


def test_git_secret_moves_credentials_into_a_header_and_keeps_urls_token_free() -> None:
    secret = benchfile.git_secret(
        {
            "frappe": "https://github.com/frappe/frappe",
            "de_macrs": f"https://{CANARY}@github.com/d/de_macrs.git",
        }
    )
    header = "Authorization: Basic " + base64.b64encode(f"{CANARY}:".encode()).decode()
    assert secret.text == (
        "url.frappe=https://github.com/frappe/frappe\n"
        "url.de_macrs=https://github.com/d/de_macrs.git\n"
        f"header.de_macrs={header}\n"
    )
    assert set(secret.secrets) == {CANARY, header.split()[-1]}
    assert benchfile.split_credentials("https://u:p%40ss@h/x.git") == (
        "https://h/x.git", "Authorization: Basic " + base64.b64encode(b"u:p@ss").decode(), ["u", "p@ss"],
    )  # fmt: skip


@pytest.mark.parametrize(
    "url",
    ["https://h/x.git\nurl.other=https://evil/", "ssh://git@h/x.git", "https://h/x y.git", "https://h/x'.git",
     "-c core.sshCommand=x", "git@github.com:o/r.git", "https://h/x`id`.git"],
)  # fmt: skip
def test_git_secret_refuses_urls_that_could_break_out(url: str) -> None:
    with pytest.raises(ConfigError):
        benchfile.git_secret({"app": url})


# ---------------------------------------------------------------- build/exact.py, pure parts


def test_imagekit_containerfile_is_the_shipped_one_or_a_generated_one() -> None:
    shipped = parse_containerfile(default_containerfile().read_text(), default_containerfile())
    assert exactbuild.is_imagekit_containerfile(shipped)
    assert exactbuild.is_imagekit_containerfile(parse_containerfile(_render("erpnext"), None))
    copied = parse_containerfile(default_containerfile().read_text(), Path("/elsewhere/Containerfile"))
    assert not exactbuild.is_imagekit_containerfile(copied)  # a user's copy is the user's own file


def test_commit_mismatches_name_each_repository() -> None:
    planned = {"frappe": "a" * 40, "erpnext": "b" * 40, "hrms": "c" * 40}
    found = {"frappe": b"a" * 40 + b"\n", "erpnext": b"d" * 40 + b"\n"}
    assert exactbuild.commit_mismatches(planned, found) == [
        f"erpnext is at {'d' * 40}, planned {'b' * 40}",
        f"hrms is at no recorded commit, planned {'c' * 40}",
    ]
    assert exactbuild.commit_mismatches(planned, None)[0].startswith("frappe is at no recorded commit")
    assert exactbuild.commit_mismatches({"frappe": "a" * 40}, {"frappe": b"a" * 40}) == []


# ---------------------------------------------------------------- the plan of an exact build


def _exact_plan(tmp_path: Path) -> build.BuildPlan:
    cf = default_containerfile()
    secrets = Secrets(injected=inject(APPS_JSON, ENV), redactor=Redactor([CANARY]))
    sources = build.Sources(
        {**ENV, "BUILD_NETWORK": "host"}, parse_containerfile(cf.read_text(), cf), dict(FRAPPE),
        [dict(a) for a in APPS], json.dumps(APPS_JSON), secrets,
    )  # fmt: skip
    return build.assemble_plan(Workspace.at(tmp_path), BuildOptions(), sources, CLI)


def test_exact_plan_generates_the_file_passes_commits_and_the_secret_by_env(tmp_path: Path) -> None:
    plan = _exact_plan(tmp_path)
    assert plan.exact is not None and plan.apps_json_mode == "exact"
    assert plan.containerfile.path is None and benchfile.is_generated(plan.containerfile.text)
    argv = plan.command()
    assert CANARY not in " ".join(argv)
    assert argv[argv.index("--secret") + 1] == "id=imagekit_git,env=IMAGEKIT_GIT_SECRET"
    assert argv[argv.index("--network") + 1] == "host"
    assert plan.build_args["IMAGEKIT_BASE"] == tiers.top(plan.exact.tiers).ref == plan.to_dict()["base_tier"]
    assert [tier.name for tier in plan.exact.tiers] == ["system"]
    assert "--build-arg" in argv and "IMAGEKIT_SHA_DE_MACRS=" + "c" * 40 in argv
    assert "CACHE_BUST" not in plan.build_args and "FRAPPE_PATH" not in plan.build_args
    env = plan.secret_env()
    assert env["IMAGEKIT_GIT_SECRET"] == plan.exact.secret.text and "apps_json" not in " ".join(argv)
    assert CANARY not in env["IMAGEKIT_GIT_SECRET"]  # only its base64 in a header
    assert plan.redactor.redact(env["IMAGEKIT_GIT_SECRET"]) != env["IMAGEKIT_GIT_SECRET"]
    shown = json.dumps(plan.to_dict())
    assert CANARY not in shown and plan.exact.secret.text not in shown
    assert plan.to_dict()["generated_containerfile"] == plan.containerfile.text
    assert not any("CACHE_BUST" in w for w in plan.warnings)
    assert exactbuild.OWN_CONTAINERFILE_NOTE not in plan.notes


def test_a_users_own_containerfile_builds_as_today_with_a_note(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.exact is None and plan.apps_json_mode == "secret"
    assert exactbuild.OWN_CONTAINERFILE_NOTE in plan.notes
    assert plan.to_dict()["generated_containerfile"] is None
    assert plan.to_dict()["docker"]["note"] is None
    assert not any(a.startswith("IMAGEKIT_") for a in plan.build_args)


def test_bad_build_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BUILD_NETWORK='bridge0'"):
        containerfile = parse_containerfile(default_containerfile().read_text(), default_containerfile())
        secrets = Secrets(injected=inject(APPS_JSON, ENV), redactor=Redactor([CANARY]))
        sources = build.Sources(
            {**ENV, "BUILD_NETWORK": "bridge0"},
            containerfile,
            dict(FRAPPE),
            [dict(a) for a in APPS],
            "[]",
            secrets,
        )
        build.assemble_plan(Workspace.at(tmp_path), BuildOptions(), sources, CLI)


def test_the_helper_step_writes_the_helper_exactly_and_it_is_valid_sh(tmp_path: Path) -> None:
    cf = parse_containerfile(_render("erpnext"), None)
    (step,) = [i for i in cf.instructions if i.keyword == "RUN" and f"> {benchfile.HELPER}" in i.command]
    target = tmp_path / "imagekit-git"
    done = process.run(["sh", "-c", step.command.replace(benchfile.HELPER, str(target))], timeout=30)
    assert done.returncode == 0, done.stderr
    assert target.read_text() == benchfile.helper_script()
    assert process.run(["sh", "-n", str(target)], timeout=30).returncode == 0
    assert process.run(["busybox", "sh", "-n", str(target)], timeout=30).returncode == 0
