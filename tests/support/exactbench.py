"""A fake ``python:X-slim-bookworm`` for exact builds: busybox, the stub tools of
tests/fixtures/containerfiles/fake-toolchain (bench init/get-app/build with fixed sleeps), and
this machine's real git (the binary, git-core and their shared libraries), so the generated
Containerfile fetches each app by commit from real git servers, as it would in production.

Used by tests/integration/test_exact_build.py and benchmarks/app_bump.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from frappe_imagekit import process

TOOLCHAIN = Path(__file__).resolve().parents[1] / "fixtures" / "containerfiles" / "fake-toolchain"
GIT_BINARIES = ("/usr/bin/git", "/usr/lib/git-core/git-remote-http")


def shared_libraries(binary: str) -> list[str]:
    """The absolute paths ``ldd`` names for ``binary`` (loader included)."""
    done = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    return sorted(set(re.findall(r"(/\S+\.so[.\d]*)", done.stdout)))


def git_rootfs(target: Path) -> None:
    """Copy real git and everything it loads into ``target`` at the same absolute paths."""
    shutil.copytree("/usr/lib/git-core", target / "usr/lib/git-core", symlinks=True,
                    ignore=shutil.ignore_patterns("mergetools"))  # fmt: skip
    (target / "usr/bin").mkdir(parents=True, exist_ok=True)
    (target / "usr/share/git-core/templates").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/usr/bin/git", target / "usr/bin/git")
    for lib in {lib for binary in GIT_BINARIES for lib in shared_libraries(binary)}:
        dest = target / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(lib).resolve(), dest)


def build_fake_base(docker: str, tag: str, workdir: Path, seconds: str = "init=1 get-app=1 build=1") -> str:
    """Build ``tag`` (``python:V-slim-bookworm``) with git and the bench stubs; returns ``tag``."""
    context = workdir / "fake-base"
    shutil.copytree(TOOLCHAIN, context)
    git_rootfs(context / "git-rootfs")
    text = (TOOLCHAIN / "Containerfile").read_text()
    text += f'COPY git-rootfs/ /\nRUN git --version && echo "{seconds}" > /etc/fake-bench-seconds\n'
    (context / "Containerfile").write_text(text)
    argv = [docker, "build", "-q", "-t", tag, "-f", str(context / "Containerfile"), str(context)]
    done = process.run(argv, env={"DOCKER_BUILDKIT": "1"}, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return tag
