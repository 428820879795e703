"""The frontend's entrypoint as imagekit's shipped Containerfile writes it, run as PID 1 of a
real container: it must stop on SIGTERM at once (real-lab-2026-12-07.md, summary point 6:
without `exec`, bash stayed PID 1, ignored SIGTERM, and every `down` waited 10 s).

The image is the local busybox with the script read back from the Containerfile's text, a
stub nginx (waits until SIGTERM) and a stub envsubst; /bin/bash execs busybox sh.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from frappe_imagekit.build.containerfile import default_containerfile
from tests.support import dockerd
from tests.support.printfscript import printed_script

pytestmark = pytest.mark.integration

ENTRYPOINT = "/usr/local/bin/nginx-entrypoint.sh"
STOP_TIMEOUT = 8

_CONTAINERFILE = """\
ARG BASE
FROM ${BASE}
COPY nginx envsubst nginx-entrypoint.sh /usr/local/bin/
RUN printf '#!/bin/sh\\nexec sh "$@"\\n' > /bin/bash && chmod 755 /bin/bash /usr/local/bin/* \\
    && mkdir -p /templates/nginx /etc/nginx/conf.d && touch /templates/nginx/frappe.conf.template
ENTRYPOINT ["/usr/local/bin/nginx-entrypoint.sh"]
"""
_NGINX = "#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 0.2; done\n"


def test_the_shipped_frontend_entrypoint_stops_on_sigterm(
    tmp_path: Path, docker_daemon: str, busybox_image: str, unique_name, cleanup_images: list[str]
) -> None:
    script = printed_script(default_containerfile().read_text(), ENTRYPOINT)
    (tmp_path / "nginx-entrypoint.sh").write_text(script)
    (tmp_path / "nginx").write_text(_NGINX)
    (tmp_path / "envsubst").write_text("#!/bin/sh\ncat\n")
    (tmp_path / "Containerfile").write_text(_CONTAINERFILE)
    image, name = unique_name("entrypoint"), unique_name("frontend")
    cleanup_images.append(image)
    dockerd.docker(docker_daemon, "build", "-q", "--build-arg", f"BASE={busybox_image}", "-t", image,
                   "-f", str(tmp_path / "Containerfile"), str(tmp_path), timeout=120)  # fmt: skip
    dockerd.docker(docker_daemon, "run", "-d", "--name", name, image, timeout=60)
    try:
        pid1 = _pid1_cmdline(docker_daemon, name)
        assert "nginx" in pid1 and "nginx-entrypoint" not in pid1, pid1
        started = time.monotonic()
        dockerd.docker(docker_daemon, "stop", "-t", str(STOP_TIMEOUT), name, timeout=60)
        took = time.monotonic() - started
        inspect = dockerd.docker(docker_daemon, "inspect", "--format", "{{.State.ExitCode}}", name)
        assert took < STOP_TIMEOUT / 2, f"docker stop took {took:.1f} s: PID 1 ignored SIGTERM"
        assert inspect.stdout.strip() == "0"  # nginx exited on SIGTERM, not killed (137)
    finally:
        dockerd.docker(docker_daemon, "rm", "-f", name, check=False, timeout=60)


def _pid1_cmdline(docker: str, name: str) -> str:
    """PID 1's argv once nginx runs (``nginx -g``), or as it is after 3 s."""
    deadline, cmdline = time.monotonic() + 3, ""
    while time.monotonic() < deadline and " -g " not in cmdline:
        done = dockerd.docker(docker, "exec", name, "cat", "/proc/1/cmdline", check=False)
        cmdline = done.stdout.replace("\0", " ")
        time.sleep(0.1)
    return cmdline
