"""After migrate, every site answers: ``GET /api/method/ping`` with the site's ``Host:`` header
expecting ``pong``, and one asset named in ``sites/assets/assets.json`` answering 200.

Requests go from inside the project's own containers (``docker exec`` of curl, python3 or wget in
the backend), never from this machine to a container address: through the frontend service
(``http://frontend:8080``, frappe_docker's nginx) when the config has one, else to the backend's
own gunicorn port (``http://127.0.0.1:8000``; gunicorn serves no assets, so only ping is asked).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from frappe_imagekit import validate
from frappe_imagekit.errors import DeployError
from frappe_imagekit.runner import Runner

FRONTEND_URL = "http://frontend:8080"
BACKEND_URL = "http://127.0.0.1:8000"
PING = "/api/method/ping"
ASSETS_MANIFEST = "sites/assets/assets.json"
NO_TOOL = 127

# $1 url, $2 Host header, $3 the python fallback; prints the status, then the body.
PROBE = r"""
url=$1; host=$2; out=/tmp/.imagekit-probe.$$; trap 'rm -f "$out" "$out.h"' EXIT
if command -v curl >/dev/null 2>&1; then
    code=$(curl -sS -m 10 -o "$out" -w '%{http_code}' -H "Host: $host" "$url") || exit 3
elif command -v python3 >/dev/null 2>&1; then
    exec python3 -c "$3" "$url" "$host"
elif command -v wget >/dev/null 2>&1; then
    wget -S -q -O "$out" --header "Host: $host" "$url" 2>"$out.h"  # no -T: busybox-static crashes on it
    code=$(sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9]*\).*/\1/p' "$out.h" | tail -n 1)
    [ -n "$code" ] || { cat "$out.h" >&2; exit 3; }
else
    echo "no curl, python3 or wget in the container" >&2; exit 127
fi
echo "$code"; head -c 4000 "$out" 2>/dev/null; exit 0
"""
PROBE_PY = r"""
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Host": sys.argv[2]})
try:
    resp = urllib.request.urlopen(req, timeout=10)
    code, body = resp.status, resp.read(4000)
except urllib.error.HTTPError as exc:
    code, body = exc.code, exc.read(4000)
except OSError as exc:
    sys.exit(f"{exc}")
print(code)
sys.stdout.write(body.decode("utf-8", "replace"))
"""


@dataclass(frozen=True)
class Answer:
    status: int
    body: str

    @property
    def first_line(self) -> str:
        lines = self.body.strip().splitlines()
        return lines[0][:200] if lines else "(empty body)"


def base_url(services: Mapping[str, object]) -> str:
    return FRONTEND_URL if "frontend" in services else BACKEND_URL


def probe_argv(container_id: str, url: str, host: str) -> list[str]:
    """``docker exec`` of the probe in ``container_id`` (pure)."""
    return ["docker", "exec", container_id, "sh", "-c", PROBE, "probe", url, host, PROBE_PY]


def parse_answer(stdout: str) -> Answer | None:
    status, _, body = stdout.partition("\n")
    return Answer(int(status), body) if status.strip().isdigit() else None


def get(runner: Runner, container_id: str, url: str, host: str) -> Answer:
    """One request from inside the container; raise a sentence when it cannot be made."""
    done = runner.run(probe_argv(container_id, url, host), timeout=30)
    answer = parse_answer(done.stdout) if done.returncode == 0 else None
    if answer is not None:
        return answer
    detail = (done.stderr or done.stdout).strip().splitlines()
    why = detail[-1] if detail else f"exit status {done.returncode}"
    if done.returncode == NO_TOOL:
        raise DeployError(f"cannot check {host}: {why}; add curl to the image, or pass --no-health-check.")
    raise DeployError(
        f"{host} did not answer at {url} ({why}): check that the service there runs, "
        "or pass --no-health-check."
    )


def first_asset(manifest_text: str | None) -> str | None:
    """One asset path (``/assets/...``) from ``assets.json``, or None."""
    try:
        data = json.loads(manifest_text or "")
    except json.JSONDecodeError:
        return None
    paths = sorted(v for v in data.values() if isinstance(v, str)) if isinstance(data, dict) else []
    for path in paths:
        if path.startswith("/assets/") and all(c.isalnum() or c in "/._-" for c in path):
            return path
    return None


def check_site(runner: Runner, container_id: str, url: str, site: str, asset: str | None) -> str:
    """Ping (and the asset) of one site; return "ok" or raise naming the status and body."""
    site = validate.site_name(site, "the site name", DeployError)
    ping = get(runner, container_id, url + PING, site)
    if ping.status != 200 or "pong" not in ping.body:
        raise DeployError(
            f"site {site} answered {PING} with {ping.status}: {ping.first_line}; it is live and "
            "broken: check the backend logs (`docker logs`), or deploy the previous version."
        )
    if asset:
        got = get(runner, container_id, url + asset, site)
        if got.status != 200:
            raise DeployError(
                f"site {site} answered {asset} (from {ASSETS_MANIFEST}) with {got.status}: "
                f"{got.first_line}; the assets are stale: rebuild the image or recreate the frontend."
            )
    return "ok"
