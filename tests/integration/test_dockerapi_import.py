"""The docker SDK is loaded without paramiko for local daemons, and paramiko still works after."""

import subprocess
import sys

PROBE = """
import sys
from frappe_imagekit import dockerapi
dockerapi.client().ping()
print("paramiko-loaded" if "paramiko" in sys.modules else "paramiko-not-loaded")
import paramiko
print("paramiko-importable", paramiko.SSHClient.__name__)
"""


def test_local_client_skips_paramiko_and_leaves_it_importable(docker_daemon):
    env_probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "DOCKER_HOST": "unix:///var/run/docker.sock"},
    )
    assert env_probe.returncode == 0, env_probe.stderr
    assert env_probe.stdout.split() == ["paramiko-not-loaded", "paramiko-importable", "SSHClient"]
