"""imagekit's own bench Containerfile, generated from the build plan (pure functions only).

The shipped production Containerfile (``containerfiles/Containerfile``) is the template: its
``base`` stage, the compilers of the ``builder`` stage and the final ``backend`` stage are kept
as written. Between them ``render`` puts the bench steps, one per repository:

- frappe's step fetches frappe at its resolved commit and runs ``bench init`` from that local
  checkout;
- then one step per app, in apps.json order: fetch the app at its commit, ``bench get-app``
  from the local checkout, ``bench build --app APP``.

Each step is keyed by its repository's commit: ``ARG IMAGEKIT_SHA_<APP>`` is declared right
before the step, so a changed commit re-runs that step and the ones after it, nothing before.
The generated text holds app names only (no URL, commit or ref): commits and refs travel as
build args, the URLs in the BuildKit secret ``imagekit_git`` (``git_secret``), whose
credentials become an ``Authorization`` header in the git child's environment, never a URL in
argv. Each step records the commit it installed in ``.imagekit/commits/<app>`` and deletes the
app's ``.git`` in the same RUN; imagekit reads those files back after the build.

Each step is its own stage and lists what it changed and removed in the bench; the final stage
makes one layer per repository from those lists (``layers``), so the final image's layers follow
the apps.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from frappe_imagekit import validate
from frappe_imagekit.build import layers
from frappe_imagekit.errors import ConfigError

MARK = "# imagekit: bench Containerfile generated from the build plan"
TIER_MARK = "# imagekit: system tier (base stage) of the generated Containerfile"
BASE_ARG = "IMAGEKIT_BASE"
SECRET_ID = "imagekit_git"
SECRET_ENV = "IMAGEKIT_GIT_SECRET"
SECRET_TARGET = "/run/secrets/imagekit_git"
SOURCES = "/tmp/imagekit-src"
BENCH = "/home/frappe/frappe-bench"
COMMITS_DIR = f"{BENCH}/.imagekit/commits"
HELPER = "/usr/local/bin/imagekit-git"
LAYERS = "/tmp/imagekit-layers"  # in each step stage: the lists of what the step changed
_BUILDER = "FROM base AS builder"
_BUILDER_USER = "\nUSER frappe\n"
_BACKEND = "\nFROM base AS backend"

_CACHE_MOUNTS = (
    f"--mount=type=secret,id={SECRET_ID},target={SECRET_TARGET},uid=1000,gid=1000,required=true",
    "--mount=type=cache,target=/home/frappe/.cache/pip,uid=1000,gid=1000",
    "--mount=type=cache,target=/home/frappe/.cache/uv,uid=1000,gid=1000",
    "--mount=type=cache,target=/home/frappe/.cache/yarn,uid=1000,gid=1000",
    "--mount=type=cache,target=/home/frappe/.npm,uid=1000,gid=1000",
)

# The package indexes of each bench step (build args PIP_INDEX_URL and NPM_REGISTRY, declared in
# the builder stage of the production file): uv, yarn and npm read their own variables; an
# empty PIP_INDEX_URL would be an empty index to pip, so it is unset.
_INDEXES = (
    'if [ -n "${PIP_INDEX_URL:-}" ]; then export UV_INDEX_URL="$PIP_INDEX_URL"; else unset PIP_INDEX_URL; fi',
    'if [ -n "${NPM_REGISTRY:-}" ]; then '
    'export npm_config_registry="$NPM_REGISTRY" YARN_REGISTRY="$NPM_REGISTRY"; fi',
)

# The helper every bench step calls. Plain POSIX sh (dash and busybox alike), no single quotes
# (each line is passed to printf in single quotes). The URL comes from the secret and goes to
# git's argv token-free; the credentials reach git as GIT_CONFIG_* environment variables.
_HELPER_SCRIPT = (
    "#!/bin/sh",
    "# imagekit-git fetch NAME SHA REF: a checkout of NAME at exactly SHA in " + SOURCES + "/NAME",
    "# imagekit-git seal NAME: record the commit bench installed, delete its .git and the logs",
    "# imagekit-git mark NAME, layer NAME: around NAME's step, list what it changed and removed",
    "# imagekit-git apply NAME ROOT: in the final stage, NAME's layer from its step mounted at ROOT",
    "set -eu",
    "export LC_ALL=C",
    f"secret={SECRET_TARGET} src={SOURCES} bench={BENCH} layers={LAYERS}",
    'field() { sed -n "s|^$1\\.$2=||p" "$secret"; }',
    'fail() { echo "imagekit: $*" >&2; exit 1; }',
    'case "$1" in',
    "fetch)",
    '  name=$2 sha=$3 ref=$4 url=$(field url "$2") header=$(field header "$2")',
    '  [ -n "$url" ] || fail "the imagekit_git secret names no URL for $name"',
    '  rm -rf "${src:?}/$name" && mkdir -p "$src/$name" && cd "$src/$name" && git init -q',
    "  export GIT_CONFIG_NOSYSTEM=1",
    '  if [ -n "$header" ]; then',
    '    export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader GIT_CONFIG_VALUE_0="$header"',
    "  fi",
    '  echo "imagekit: fetching $name at $sha ($ref)"',
    '  if ! git fetch -q --no-tags --depth 1 "$url" "$sha"; then',
    '    echo "imagekit: the server refused to fetch $name by commit: fetching $ref and checking it"',
    '    git fetch -q --no-tags --depth 1 "$url" "$ref" || fail "$name: cannot fetch $ref"',
    "  fi",
    '  got=$(git rev-parse "FETCH_HEAD^{commit}")',
    '  if [ "$got" != "$sha" ]; then',
    '    fail "$name: $ref is at $got, not at the planned commit $sha: refusing to build it"',
    "  fi",
    '  git checkout -q -B "$ref" "$sha"',
    "  ;;",
    "seal)",
    '  name=$2 && cd "$bench" && mkdir -p .imagekit/commits',
    '  git -C "apps/$name" rev-parse HEAD > ".imagekit/commits/$name"',
    '  rm -rf "apps/$name/.git" "${src:?}"',
    "  find logs -type f -exec rm -f {} +",
    "  ;;",
    "mark)",
    '  name=$2 && mkdir -p "$layers" && : > "$layers/$name.before" && touch "$layers/$name.mark"',
    "  sleep 0.05",
    '  if [ -d "$bench" ]; then',
    '    cd "$bench" && find . -printf "%y %p\\0" | sort -z > "$layers/$name.before"',
    "  fi",
    "  ;;",
    "layer)",
    '  name=$2 && cd "$bench"',
    '  find . -cnewer "$layers/$name.mark" -print0 > "$layers/$name.changed"',
    '  find . -printf "%y %p\\0" | sort -z | comm -z -23 "$layers/$name.before" - | sed -z "s/^. //" \\',
    '    > "$layers/$name.deleted"',
    '  rm -f "$layers/$name.before" "$layers/$name.mark"',
    '  changed=$(tr -cd "\\000" < "$layers/$name.changed" | wc -c)',
    '  removed=$(tr -cd "\\000" < "$layers/$name.deleted" | wc -c)',
    '  echo "imagekit: the layer of $name: $changed entries changed, $removed removed"',
    "  ;;",
    "apply)",
    '  name=$2 root=$3 && mkdir -p "$bench" && cd "$bench"',
    '  [ -f "$root$layers/$name.changed" ] && [ -f "$root$layers/$name.deleted" ] \\',
    '    || fail "the step of $name left no layer lists in $layers"',
    '  sed -z -e "s,^\\./sites/assets\\$,./assets," -e "s,^\\./sites/assets/,./assets/," \\',
    '    "$root$layers/$name.deleted" | xargs -0 -r rm -rf --',
    '  failed=/tmp/imagekit-apply-failed && rm -f "$failed"',
    '  changed="$root$layers/$name.changed"',
    '  { tar -C "$root$bench" --null --no-recursion -T "$changed" -cf - || : > "$failed"; } \\',
    '    | tar --transform "s,^\\./sites/assets\\$,./assets,S" \\',
    '      --transform "s,^\\./sites/assets/,./assets/,S" -xpf -',
    '  [ ! -e "$failed" ] || fail "the layer of $name could not be read from its step"',
    "  ;;",
    '*) echo "imagekit-git: fetch, seal, mark, layer or apply" >&2; exit 2 ;;',
    "esac",
)


_HEADER = """\
# imagekit's production Containerfile (frappe_imagekit/containerfiles/Containerfile: its builder
# and final stages, cache mounts; its base stage is the system tier below) with the bench built in one
# step per repository: frappe, then each app in apps.json order, each keyed by its commit
# (ARG IMAGEKIT_SHA_<APP>), so a bumped app re-runs its own step and the ones after it only.
# Each step is its own stage (bench-<name>) and lists what it changed in the bench; the final
# stage has one layer per repository made from those lists (a bump changes its app's layers).
# Every repository is fetched at exactly its planned commit; URLs and credentials come only
# from the BuildKit secret imagekit_git. imagekit builds it with
#   DOCKER_BUILDKIT=1 docker build --secret id=imagekit_git,env=IMAGEKIT_GIT_SECRET
#     --build-arg IMAGEKIT_SHA_FRAPPE=... --build-arg IMAGEKIT_REF_FRAPPE=... (one pair per app)
# No "# syntax=" line and no heredocs: both would need Docker Hub or a newer frontend.
"""


_BASE_FROM = f"""\
# The system tier (OS packages, Python, Node, wkhtmltopdf, bench, entrypoint) is the production
# file's base stage, built once as its own image IMAGE_NAME:base-<key> (key: a hash of its text
# and build args) and reused by every build with the same key, across `docker builder prune`.
ARG {BASE_ARG}
FROM ${{{BASE_ARG}}} AS base
"""
_TIER_HEADER = """\
# The base stage of imagekit's production Containerfile, built by imagekit as the image
# IMAGE_NAME:base-<key>; the generated bench Containerfile starts FROM it.
"""


@dataclass(frozen=True)
class Template:
    """The production Containerfile cut in three: the ``base`` stage (the system tier), the
    builder stage up to its ``USER frappe``, and the final stage."""

    base: str
    builder: str
    tail: str


def split_template(text: str) -> Template:
    """Cut the production Containerfile around its bench step (``ValueError`` if it cannot)."""
    builder = text.find(_BUILDER)
    user = text.find(_BUILDER_USER, builder)
    backend = text.find(_BACKEND, user)
    if min(builder, user, backend) < 0:
        raise ValueError("the production Containerfile lost its builder/backend markers")
    start = _first_instruction_or_blank(text)
    return Template(
        base=text[start:builder].rstrip("\n") + "\n",
        builder=text[builder:user].rstrip("\n") + "\n",
        tail=text[backend:].lstrip("\n"),
    )


def _first_instruction_or_blank(text: str) -> int:
    """The end of the file's leading comment block (it describes the static file, not ours)."""
    offset = 0
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            return offset
        offset += len(line)
    return offset


def sha_arg(name: str) -> str:
    """The build arg that keys ``name``'s step: ``IMAGEKIT_SHA_HRMS``."""
    return "IMAGEKIT_SHA_" + validate.app_name(name, f"app {name!r}").upper()


def ref_arg(name: str) -> str:
    """The build arg with the ref a commit came from (the fallback fetch): ``IMAGEKIT_REF_HRMS``."""
    return "IMAGEKIT_REF_" + validate.app_name(name, f"app {name!r}").upper()


def render(app_names: Sequence[str], template: Template) -> str:
    """The whole Containerfile for frappe plus ``app_names`` (in that order)."""
    names = [validate.app_name(n, f"app {n!r}") for n in app_names]
    if len(set(names)) != len(names) or "frappe" in names:
        raise ConfigError("apps.json lists an app twice (or frappe itself): list each app once.")
    parts = [MARK + "\n" + _HEADER + _BASE_FROM, template.builder, _helper_step(), "USER frappe\n"]
    parts.append(_frappe_step())
    parts += [_app_step(name, parent) for parent, name in zip(["frappe", *names], names, strict=False)]
    parts.append(layers.final_stage(["frappe", *names], template.tail, HELPER))
    return "\n".join(parts)


def render_tier(template: Template) -> str:
    """The system tier: the production file's ``base`` stage alone, built as its own image."""
    return TIER_MARK + "\n" + _TIER_HEADER + template.base


def helper_script() -> str:
    """The text of ``/usr/local/bin/imagekit-git`` as the generated Containerfile writes it."""
    return "".join(line + "\n" for line in _HELPER_SCRIPT)


def is_generated(text: str) -> bool:
    return text.startswith(MARK + "\n")


def _helper_step() -> str:
    lines = " \\\n        ".join(shlex.quote(line) for line in _HELPER_SCRIPT)
    return (
        "# imagekit: fetches one repository at exactly one commit (a server that refuses to fetch\n"
        "# by commit gets the ref, checked against the commit), and seals an installed app.\n"
        f"RUN printf '%s\\n' \\\n        {lines} \\\n        > {HELPER} \\\n    && chmod 755 {HELPER}\n"
    )


def _run(args: Sequence[str], body: Sequence[str]) -> str:
    declared = "".join(f"ARG {a}\n" for a in args)
    mounts = " \\\n    ".join(_CACHE_MOUNTS)
    return f"{declared}RUN {mounts} \\\n    " + " \\\n    && ".join(body) + "\n"


def _frappe_step() -> str:
    sha, ref = f'"${{{sha_arg("frappe")}}}"', f'"${{{ref_arg("frappe")}}}"'
    body = [
        *_INDEXES,
        f"{HELPER} fetch frappe {sha} {ref}",
        f"{HELPER} mark frappe",
        f"bench init --frappe-path={SOURCES}/frappe --frappe-branch={ref} --no-procfile --no-backups "
        f"--skip-redis-config-generation {BENCH}",
        f"cd {BENCH}",
        'if [ -n "${SETUPTOOLS_SPEC}" ]; then env/bin/python -m pip install --quiet "${SETUPTOOLS_SPEC}"; fi',
        'echo "{}" > sites/common_site_config.json',
        f"{HELPER} seal frappe",
        f"{HELPER} layer frappe",
    ]
    head = layers.step_stage("frappe", "builder") + (
        "# frappe at its planned commit. A new frappe commit re-runs this step and every app's.\n"
        "# frappe-bench 5.31 seeds the venv with setuptools 84 (no pkg_resources): pinned below.\n"
        "# No --verbose: yarn's verbose lines overflow BuildKit's 2 MiB step log (the end is lost).\n"
        'ARG SETUPTOOLS_SPEC="setuptools<81"\n'
    )
    return head + _run([sha_arg("frappe"), ref_arg("frappe")], body)


def _app_step(name: str, parent: str) -> str:
    quoted = shlex.quote(name)
    sha, ref = f'"${{{sha_arg(name)}}}"', f'"${{{ref_arg(name)}}}"'
    body = [
        *_INDEXES,
        f"{HELPER} fetch {quoted} {sha} {ref}",
        f"cd {BENCH}",
        f"{HELPER} mark {quoted}",
        f"bench get-app --skip-assets --branch {ref} {SOURCES}/{quoted}",
        f"bench build --app {quoted}",
        f"{HELPER} seal {quoted}",
        f"{HELPER} layer {quoted}",
    ]
    head = layers.step_stage(name, layers.stage_name(parent))
    return head + f"# {name} at its planned commit.\n" + _run([sha_arg(name), ref_arg(name)], body)


# ---------------------------------------------------------------- build args and the secret


def commit_args(frappe: Mapping[str, Any], apps: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``IMAGEKIT_SHA_*`` and ``IMAGEKIT_REF_*`` of frappe and each app (checked values)."""
    args: dict[str, str] = {}
    for pin in [frappe, *apps]:
        name = str(pin.get("name") or "")
        args[sha_arg(name)] = validate.commit_sha(pin.get("sha"), f"the commit of {name}")
        args[ref_arg(name)] = validate.git_ref(pin.get("ref"), f"the ref of {name}")
    return args


@dataclass(frozen=True)
class GitSecret:
    """The ``imagekit_git`` secret (SECRET: never print it) and the values to redact."""

    text: str
    secrets: tuple[str, ...]


def git_secret(urls: Mapping[str, str]) -> GitSecret:
    """``url.NAME=...`` (credential-free) and ``header.NAME=Authorization: Basic ...`` lines
    from each repository's URL with its token already in place."""
    lines: list[str] = []
    secrets: list[str] = []
    for name, url in urls.items():
        clean, header, found = split_credentials(validate.git_url(url, f"the URL of {name}"))
        lines.append(f"url.{validate.app_name(name, f'app {name!r}')}={clean}")
        if header:
            lines.append(f"header.{name}={header}")
            secrets += [header.split()[-1], *found]
    return GitSecret("".join(line + "\n" for line in lines), tuple(secrets))


def split_credentials(url: str) -> tuple[str, str | None, list[str]]:
    """``(url without user part, Authorization header or None, the credential parts)``."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None, []
    clean = urlunsplit(parts._replace(netloc=hostport))
    credentials = unquote(userinfo) if ":" in userinfo else unquote(userinfo) + ":"
    found = [p for p in credentials.split(":") if p]
    header = "Authorization: Basic " + base64.b64encode(credentials.encode()).decode()
    return clean, header, found
