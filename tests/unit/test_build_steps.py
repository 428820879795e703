"""build/steps.py: BuildKit's [stage i/n] read back to the Containerfile's steps, and the lines
of a real build told to a reporter."""

from __future__ import annotations

from pathlib import Path

from frappe_imagekit.build import benchfile, steps
from frappe_imagekit.build.containerfile import default_containerfile, parse_containerfile
from frappe_imagekit.progress import PlainReporter

TEMPLATE = benchfile.split_template(default_containerfile().read_text())
APPS = ["payments", "de_macrs"]
# The bench Containerfile of the layout the real builds A1/A2 below ran (rendered for APPS by main
# a9b4c80, before the final image's layers followed the apps): their step numbers are read back
# against it.
FIXTURES = Path(__file__).parent.parent / "fixtures" / "containerfiles"
RENDERED_A = (FIXTURES / "rendered-a9b4c80-payments-de_macrs.Containerfile").read_text()

# The step lines of the real cold build of v1.0.0 (frappe, payments, de_macrs on Frappe 15.55.1,
# docker 20.10's BuildKit): /work/shared/reference/real-lab-2026-12-07/deploy-runs/
# A1-build-v1.0.0.txt, titles cut here at the first mount; the output line of #8 is the helper's
# own echo (benchfile's `imagekit: fetching $name at $sha ($ref)`), the A1 file dropped them.
A1_MAIN = """\
#1 [internal] load build definition from .v1.0.0.Containerfile
#1 transferring dockerfile: 7.60kB done
#1 DONE 0.0s
#4 [base 1/1] FROM docker.io/lab/ikf:base-b5a10107977933bb
#4 DONE 0.0s
#5 [builder 1/6] RUN --mount=type=cache,target=/var/cache/apt,sharing=locked     --mount=type=cache
#5 DONE 46.4s
#6 [builder 2/6] RUN printf '%s\\n'         '#!/bin/sh'         '# imagekit-git fetch NAME SHA REF: a
#6 DONE 0.1s
#8 [builder 3/6] RUN --mount=type=secret,id=imagekit_git,target=/run/secrets/imagekit_git,uid=1000
#8 0.512 imagekit: fetching frappe at c9d02e1d (version-15)
#8 DONE 175.9s
#9 [builder 4/6] RUN --mount=type=secret,id=imagekit_git,target=/run/secrets/imagekit_git,uid=1000
#9 DONE 13.1s
#10 [builder 5/6] RUN --mount=type=secret,id=imagekit_git,target=/run/secrets/imagekit_git,uid=100
#10 DONE 6.1s
#11 [builder 6/6] RUN cd /home/frappe/frappe-bench     && rm -rf assets && if [ -d sites/assets ]
#11 DONE 0.3s
#12 [backend 1/2] COPY --from=builder --chown=frappe:frappe /home/frappe/frappe-bench /home/frappe
#12 DONE 9.8s
#13 [backend 2/2] WORKDIR /home/frappe/frappe-bench
#13 DONE 0.1s
#14 exporting to image
#14 exporting layers
#14 DONE 6.4s
"""

# A2-build-v1.1.0.txt (de_macrs bumped): the steps before it CACHED, a title repeated.
A2_MAIN = """\
#1 [internal] load build definition from .v1.1.0.Containerfile
#4 [base 1/1] FROM docker.io/lab/ikf:base-b5a10107977933bb
#4 DONE 0.0s
#7 [internal] settings cache mount permissions
#7 CACHED
#8 [builder 3/6] RUN --mount=type=secret,id=imagekit_git,target=/run/secrets/imagekit_git,uid=1000
#8 CACHED
#9 [builder 4/6] RUN --mount=type=secret,id=imagekit_git,target=/run/secrets/imagekit_git,uid=1000
#9 CACHED
#10 [builder 5/6] RUN --mount=type=secret,id=imagekit_git,target=/run/secrets/imagekit_git,uid=100
#10 DONE 4.9s
#4 [base 1/1] FROM docker.io/lab/ikf:base-b5a10107977933bb
#4 CACHED
"""


def _tell(text: str, *files: str) -> list[str]:
    lines: list[str] = []
    tracker = steps.StepTracker.of([parse_containerfile(f) for f in files], PlainReporter(lines.append))
    for line in text.splitlines():
        tracker.feed(line)
    return lines


def test_the_generated_file_names_each_bench_step_by_its_app() -> None:
    names = steps.step_names(parse_containerfile(benchfile.render(APPS, TEMPLATE)))
    bench = {key: name.task for key, name in names.items() if name.task.startswith("install ")}
    # the helper step names imagekit-git in its text but installs nothing
    # one stage per bench step (the final image's layers follow the apps)
    assert bench == {("bench-frappe", 1, 1): "install frappe", ("bench-payments", 1, 1): "install payments",
                     ("bench-de_macrs", 1, 1): "install de_macrs"}  # fmt: skip
    assert names[("base", 1, 1)].keyword == "FROM"  # FROM an image is numbered
    assert names[("backend", 4, 4)].keyword == "WORKDIR"  # FROM an earlier stage is not
    old = steps.step_names(parse_containerfile(RENDERED_A))
    assert {k: n.task for k, n in old.items() if n.task.startswith("install ")} == {
        ("builder", 3, 6): "install frappe", ("builder", 4, 6): "install payments",
        ("builder", 5, 6): "install de_macrs"}  # fmt: skip


def test_the_shipped_file_has_one_step_for_frappe_and_every_app() -> None:
    names = steps.step_names(parse_containerfile(default_containerfile().read_text()))
    assert [n.task for n in names.values() if n.task.startswith("install")] == ["install frappe and the apps"]


def test_a_real_cold_build_is_told_step_by_step_with_buildkits_times() -> None:
    told = _tell(A1_MAIN, RENDERED_A)
    assert told == [
        "progress: step base 1/1 started: base image",
        "progress: step base 1/1 done in 0.0 s",
        "progress: step builder 1/6 started: RUN apt-get update && DEBIAN_FRONTEND=noninteract...",
        "progress: step builder 1/6 done in 46.4 s",
        "progress: step builder 2/6 started: RUN printf '%s\\n' '#!/bin/sh' '# imagekit-git fet...",
        "progress: step builder 2/6 done in 0.1 s",
        "progress: install frappe started: builder 3/6",
        "progress: install frappe: imagekit: fetching frappe at c9d02e1d (version-15)",
        "progress: install frappe done in 175.9 s",
        "progress: install payments started: builder 4/6",
        "progress: install payments done in 13.1 s",
        "progress: install de_macrs started: builder 5/6",
        "progress: install de_macrs done in 6.1 s",
        "progress: step builder 6/6 started: RUN cd /home/frappe/frappe-bench && rm -rf assets...",
        "progress: step builder 6/6 done in 0.3 s",
        "progress: step backend 1/2 started: COPY /home/frappe/frappe-bench /home/frappe/frappe...",
        "progress: step backend 1/2 done in 9.8 s",
        "progress: step backend 2/2 started: WORKDIR /home/frappe/frappe-bench",
        "progress: step backend 2/2 done in 0.1 s",
        "progress: export image started",
        "progress: export image done in 6.4 s",
    ]


def test_an_app_bump_says_which_steps_came_from_the_cache() -> None:
    told = _tell(A2_MAIN, RENDERED_A)
    assert [line for line in told if "install" in line] == [
        "progress: install frappe started: builder 3/6",
        "progress: install frappe cached",
        "progress: install payments started: builder 4/6",
        "progress: install payments cached",
        "progress: install de_macrs started: builder 5/6",
        "progress: install de_macrs done in 4.9 s",
    ]
    assert told.count("progress: step base 1/1 started: base image") == 1  # the repeated title


def test_a_failed_step_a_foreign_title_and_a_second_build() -> None:
    text = (
        "#1 [internal] load build definition from x\n"
        "#5 [builder 3/6] COPY a b\n"  # the file's step 3/6 is a RUN: not named after it
        "#5 ERROR: failed to compute cache key\n"
        "#1 [internal] load build definition from y\n"  # a new docker build: numbers start again
        "#5 [builder 4/6] RUN --mount=type=secret,id=imagekit_git\n"
        '#5 ERROR: process "/bin/sh -c ..." did not complete successfully: exit code: 1\n'
    )
    assert _tell(text, RENDERED_A) == [
        "progress: step builder 3/6 started: COPY",
        "progress: step builder 3/6 failed after 0.0 s",
        "progress: install payments started: builder 4/6",
        "progress: install payments failed after 0.0 s",
    ]


def test_the_tier_and_the_image_build_share_stage_names_but_not_numbers() -> None:
    tier, image = benchfile.render_tier(TEMPLATE), benchfile.render(APPS, TEMPLATE)
    told = _tell(
        "#4 [base 1/1] FROM x\n#4 DONE 0.0s\n#9 [bench-payments 1/1] RUN y\n#9 CACHED\n", tier, image
    )
    assert told[0] == "progress: step base 1/1 started: base image"
    assert told[-2:] == [
        "progress: install payments started: bench-payments 1/1",
        "progress: install payments cached",
    ]


def test_a_one_stage_file_is_numbered_with_and_without_its_name() -> None:
    # tests/fixtures/build/secret.Containerfile: BuildKit of docker 20.10 shows `#4 [1/3] FROM ...`,
    # buildx 0.13's `#4 [base 1/3] FROM ...` (tests/integration/test_build_docker26.py)
    names = steps.step_names(parse_containerfile("FROM x AS base\nARG A\nRUN a\nUSER u\nRUN b\n"))
    assert sorted(names) == [
        ("", 1, 3),
        ("", 2, 3),
        ("", 3, 3),
        ("base", 1, 3),
        ("base", 2, 3),
        ("base", 3, 3),
    ]
    assert {names[("", 3, 3)].task, names[("base", 3, 3)].task} == {"step 3/3"}
