"""A fake ``python:X-slim-bookworm`` for exact builds: busybox, the stub tools of
tests/fixtures/containerfiles/fake-toolchain (bench init/get-app/build with fixed sleeps), and
this machine's real git (the binary, git-core and their shared libraries), so the generated
Containerfile fetches each app by commit from real git servers, as it would in production, and
Debian's dash as /bin/sh and GNU find, tar, sort, comm, sed and xargs in /usr/local/bin, ahead
of busybox's (the python:X-slim-bookworm image is Debian: its /bin/sh is dash, and coreutils,
findutils, tar and sed are in every Debian system; busybox's own sh would run its applets
instead), for the layer lists of each bench step (build/layers.py).

Used by tests/integration/test_exact_build.py and benchmarks/app_bump.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from frappe_imagekit import process

TOOLCHAIN = Path(__file__).resolve().parents[1] / "fixtures" / "containerfiles" / "fake-toolchain"
GIT_BINARIES = ("/usr/bin/git", "/usr/lib/git-core/git-remote-http")
GNU_TOOLS = ("find", "tar", "sort", "comm", "sed", "xargs")
SHELL = "/usr/bin/dash"


def shared_libraries(binary: str) -> list[str]:
    """The absolute paths ``ldd`` names for ``binary`` (loader included)."""
    done = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    return sorted(set(re.findall(r"(/\S+\.so[.\d]*)", done.stdout)))


def git_rootfs(target: Path) -> None:
    """Copy real git and everything it loads into ``target`` at the same absolute paths, and
    the Debian tools of ``debian_tools``."""
    shutil.copytree("/usr/lib/git-core", target / "usr/lib/git-core", symlinks=True,
                    ignore=shutil.ignore_patterns("mergetools"))  # fmt: skip
    (target / "usr/bin").mkdir(parents=True, exist_ok=True)
    (target / "usr/share/git-core/templates").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/usr/bin/git", target / "usr/bin/git")
    debian_tools(target, GIT_BINARIES)


def debian_tools(target: Path, more: tuple[str, ...] = ()) -> None:
    """Dash at /usr/bin/dash, GNU ``GNU_TOOLS`` in /usr/local/bin, and every library they and
    ``more`` load, at their absolute paths under ``target`` (/bin/sh is linked by the caller)."""
    tools = [shutil.which(name) or f"/usr/bin/{name}" for name in GNU_TOOLS]
    (target / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (target / "usr/bin").mkdir(parents=True, exist_ok=True)
    for tool in tools:
        shutil.copy2(tool, target / "usr/local/bin" / Path(tool).name)
    shutil.copy2(SHELL, target / SHELL.lstrip("/"))
    for lib in {lib for binary in [*more, *tools, SHELL] for lib in shared_libraries(binary)}:
        dest = target / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(lib).resolve(), dest)


def build_fake_base(docker: str, tag: str, workdir: Path, seconds: str = "init=1 get-app=1 build=1") -> str:
    """Build ``tag`` (``python:V-slim-bookworm``) with git and the bench stubs; returns ``tag``."""
    context = workdir / "fake-base"
    shutil.copytree(TOOLCHAIN, context)
    git_rootfs(context / "git-rootfs")
    text = (TOOLCHAIN / "Containerfile").read_text()
    text += f'COPY git-rootfs/ /\nRUN ["/bin/busybox", "ln", "-sf", "{SHELL}", "/bin/sh"]\n'
    text += f'RUN git --version && echo "{seconds}" > /etc/fake-bench-seconds\n'
    (context / "Containerfile").write_text(text)
    argv = [docker, "build", "-q", "-t", tag, "-f", str(context / "Containerfile"), str(context)]
    done = process.run(argv, env={"DOCKER_BUILDKIT": "1"}, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return tag


@dataclass(frozen=True)
class Layer:
    """One layer of a saved image: its diff_id, size in bytes, the step that made it, and the
    paths it holds (whiteouts included: ``.wh.NAME`` marks a removed NAME)."""

    diff_id: str
    size: int
    made_by: str
    entries: tuple[tuple[str, int], ...]  # (path, size of its content)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path, _size in self.entries)


def image_layers(docker: str, ref: str, workdir: Path) -> list[Layer]:
    """Every layer of ``ref``, oldest first, read from ``docker save`` (classic or OCI layout)."""
    archive = workdir / f"save-{ref.replace('/', '_').replace(':', '_')}.tar"
    done = process.run([docker, "save", "-o", str(archive), ref], timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    try:
        with tarfile.open(archive) as saved:
            manifest = json.load(_member(saved, "manifest.json"))[0]
            config = json.load(_member(saved, manifest["Config"]))
            made = [h.get("created_by", "") for h in config["history"] if not h.get("empty_layer")]
            layers = []
            for name, diff_id, step in zip(
                manifest["Layers"], config["rootfs"]["diff_ids"], made, strict=True
            ):
                with tarfile.open(fileobj=_member(saved, name)) as layer:
                    entries = tuple((m.name.removeprefix("./"), m.size) for m in layer.getmembers())
                layers.append(Layer(diff_id, saved.getmember(name).size, step, entries))
            return layers
    finally:
        archive.unlink(missing_ok=True)


def changed_layers(old: list[Layer], new: list[Layer]) -> list[Layer]:
    """The layers of ``new`` that ``old`` does not have (by diff_id)."""
    known = {layer.diff_id for layer in old}
    return [layer for layer in new if layer.diff_id not in known]


def _member(saved: tarfile.TarFile, name: str) -> IO[bytes]:
    member = saved.extractfile(name)
    if member is None:
        raise RuntimeError(f"the saved image has no file {name}")
    return member
