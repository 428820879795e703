"""The one validation at the boundary: every value that reaches git, docker, compose, ssh, a
remote shell or a file path goes through one of these functions first, whatever file or option
it came from (see docs/DESIGN.md, "Trust model").

Each function takes the raw value (of any type: repository files may hold JSON of any shape),
returns it as a checked ``str`` and otherwise raises ``error`` (``ConfigError`` by default; the
CLI passes ``UsageError`` for options) with one sentence that names ``what`` and the fix. A
message never repeats a value that could be a secret: only values that passed a strict shape
(or the first characters of a refused one that is not shaped like a token) are shown.
"""

from __future__ import annotations

import re

from frappe_imagekit.errors import ConfigError, ImagekitError

ErrorType = type[ImagekitError]

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# git check-ref-format, without the exotic parts: no control characters, space ~ ^ : ? * [ \,
# no "..", no "@{", no component starting with "." or ending with ".lock", no leading "-".
_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# compose's project-name rule (compose-spec: lower-case letters, digits, dashes, underscores,
# starting with a letter or digit). Compose v1 silently lowercases and strips; v2 refuses.
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# docker tag grammar.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# docker repository: optional registry host[:port]/, then lower-case path components.
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    r"(?:(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?::[0-9]{1,5})?/"
    r"|[A-Za-z0-9-]+:[0-9]{1,5}/)?"
    rf"{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
)
# a Frappe site name is a host name (it becomes a folder under sites/ and a bench argument).
_SITE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _text(value: object, what: str, error: ErrorType) -> str:
    if not isinstance(value, str):
        raise error(f"{what} must be a string, not {type(value).__name__}: fix it.")
    if not value:
        raise error(f"{what} is empty: set it.")
    return value


# The prefixes of GitHub and GitLab tokens: the one list every "looks like a token" check uses.
TOKEN_PREFIXES = ("ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "glpat-")
_PREFIX = "|".join(map(re.escape, TOKEN_PREFIXES))
TOKEN_SHAPE = re.compile(rf"({_PREFIX})[A-Za-z0-9_]{{8,}}")  # a whole token
_TOKEN_SHAPE = re.compile(rf"({_PREFIX}|\$\{{)")  # a refused value that must not be shown


def _shown(value: str) -> str:
    """A refused value as a message may show it: short, printable, and never anything shaped
    like a token (every printed line also passes the redactor, which knows the real ones)."""
    if _TOKEN_SHAPE.search(value):
        return "(value hidden: it looks like a token)"
    printable = "".join(c if c.isprintable() else "?" for c in value)
    return repr(printable[:24] + ("..." if len(printable) > 24 else ""))


def commit_sha(value: object, what: str, error: ErrorType = ConfigError) -> str:
    """A full commit id: 40 (SHA-1) or 64 (SHA-256) lower-case hex characters."""
    text = _text(value, what, error)
    if not _SHA.fullmatch(text):
        raise error(f"{what} is not a commit SHA (40 or 64 hex characters): fix or remove it.")
    return text


def git_ref(value: object, what: str, error: ErrorType = ConfigError) -> str:
    """A branch or tag name git accepts (``git check-ref-format``), never an option."""
    text = _text(value, what, error)
    bad = (
        text.startswith(("-", "/"))
        or text.endswith(("/", ".", ".lock"))
        or ".." in text
        or "@{" in text
        or "//" in text
        or text == "@"
        or len(text) > 255
        or _REF_BAD_CHARS.search(text) is not None
        or any(part.startswith(".") for part in text.split("/"))
    )
    if bad:
        raise error(f"{what} {_shown(text)} is not a valid git branch or tag name: fix it.")
    return text


def project_name(value: object, what: str = "the project name", error: ErrorType = ConfigError) -> str:
    """A compose project name exactly as compose uses it (it also names a state folder)."""
    text = _text(value, what, error)
    if _PROJECT.fullmatch(text):
        return text
    hint = f" (compose would use {text.lower()!r})" if _PROJECT.fullmatch(text.lower()) else ""
    raise error(
        f"{what} {_shown(text)} is not a compose project name{hint}: use lower-case letters, "
        "digits, '-' and '_', starting with a letter or digit."
    )


def image_tag(value: object, what: str = "the version", error: ErrorType = ConfigError) -> str:
    """A docker tag (versions are tags and also file names under builds/)."""
    text = _text(value, what, error)
    if not _TAG.fullmatch(text):
        raise error(
            f"{what} {_shown(text)} is not a valid image tag: use letters, digits, '.', '_' and "
            "'-' (at most 128, not starting with '.' or '-'), e.g. v1.2.0."
        )
    return text


def image_name(value: object, what: str = "the image name", error: ErrorType = ConfigError) -> str:
    """A docker repository name without tag: ``[registry[:port]/]path`` in lower case."""
    text = _text(value, what, error)
    if len(text) > 255 or not _IMAGE.fullmatch(text):
        raise error(
            f"{what} {_shown(text)} is not a valid image name: use lower-case "
            "[registry/]org/name, without a tag."
        )
    return text


def site_name(value: object, what: str = "the site name", error: ErrorType = ConfigError) -> str:
    """A Frappe site name: a host name (letters, digits, '-', dot-separated labels)."""
    text = _text(value, what, error)
    if len(text) > 253 or not _SITE.fullmatch(text):
        raise error(f"{what} {_shown(text)} is not a valid site name: use a host name like erp.example.com.")
    return text


def env_name(value: object, what: str = "the variable name", error: ErrorType = ConfigError) -> str:
    """An environment variable name (it goes into KEY=VALUE for compose)."""
    text = _text(value, what, error)
    if not _ENV_NAME.fullmatch(text):
        raise error(f"{what} {_shown(text)} is not a variable name: use letters, digits and '_'.")
    return text


def service_name(value: object, what: str = "the service name", error: ErrorType = ConfigError) -> str:
    """A compose service name."""
    text = _text(value, what, error)
    if not _SERVICE.fullmatch(text):
        raise error(f"{what} {_shown(text)} is not a compose service name: fix it.")
    return text


def not_an_option(value: object, what: str, error: ErrorType = ConfigError) -> str:
    """A positional argument for git, docker, compose or ssh: a string that is not an option."""
    text = _text(value, what, error)
    if text.startswith("-") or any(c in text for c in "\x00\n\r"):
        raise error(f"{what} {_shown(text)} cannot start with '-' or hold line breaks: fix it.")
    return text


_PYTHON_MODULE = re.compile(r"[A-Za-z_]\w{0,127}(?:\.[A-Za-z_]\w{0,127}){0,31}")


def python_module(value: object, what: str = "the module name", error: ErrorType = ConfigError) -> str:
    """A dotted Python module name (``app.patches.v1_0.fix``); its first part names an app folder."""
    text = _text(value, what, error)
    if not _PYTHON_MODULE.fullmatch(text):
        raise error(f"{what} {_shown(text)} is not a Python module name: fix it.")
    return text


# --host: user@server[:port]. Labels as in host names (underscore allowed: ~/.ssh/config aliases).
_SSH_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,63}")
_PORT = re.compile(
    r"0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def host_spec(value: object, what: str = "--host", error: ErrorType = ConfigError) -> str:
    """An SSH target ``[user@]server[:port]``: server a host name, an IPv4 address, ``[IPv6]``
    or a bare IPv6 address (no port then); port 1-65535. Nothing is changed silently."""
    text = _text(value, what, error)
    user, at, rest = text.rpartition("@")
    problem = _host_problem(user if at else None, rest)
    if problem:
        raise error(f"{what} {_shown(text)} cannot be used: {problem}; use user@server[:port].")
    return text


def _host_problem(user: str | None, rest: str) -> str | None:
    if user is not None and not _SSH_USER.fullmatch(user):
        return "the user name before '@' is empty or has characters a user name cannot have"
    host, port = _split_port(rest)
    if port is not None and not (
        port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536
    ):
        return "the port must be a number from 1 to 65535"
    return _server_problem(host)


def _split_port(rest: str) -> tuple[str, str | None]:
    if rest.startswith("["):
        inside, close, tail = rest[1:].partition("]")
        if not close or (tail and not tail.startswith(":")):
            return rest, None  # refused below as a server name
        return f"[{inside}]", (tail[1:] if tail else None)
    if rest.count(":") == 1:
        host, _, port = rest.partition(":")
        return host, port
    return rest, None


def _server_problem(host: str) -> str | None:
    import ipaddress

    if not host:
        return "there is no server name"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1] if host.endswith("]") else "x")
        except ValueError:
            return "the part in [] is not an IPv6 address"
        return None
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "the server is neither a host name nor an IPv6 address (write [IPv6]:port)"
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return "the server is not a host name (letters, digits, '-', labels of at most 63 characters)"
    return None


# --- exact builds (benchfile) ------------------------------------------------------------------

# A Frappe app is a Python package: its name becomes a folder under apps/, a build arg name
# (IMAGEKIT_SHA_<NAME>) and a word in a generated RUN line.
_APP_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_GIT_URL = re.compile(r"(https?|file)://[^\s'\"`\\]+")


def app_name(
    value: object, what: str = "the app name", error: ErrorType = ConfigError, fix: str = "fix it"
) -> str:
    """A Frappe app name as imagekit's generated Containerfile uses it: a Python package name
    (bench names an app by its package, see ``appname``); ``fix`` ends the refusal."""
    text = _text(value, what, error)
    if not _APP_NAME.fullmatch(text):
        raise error(
            f"{what} {_shown(text)} is not a Python package name (lower-case letters, digits and '_', "
            f"starting with a letter, at most 64 characters), which imagekit's Containerfile needs: {fix}."
        )
    return text


def git_url(value: object, what: str = "the git URL", error: ErrorType = ConfigError) -> str:
    """An https, http or file URL without spaces, quotes, backslashes or control characters.

    For the URL as git finally uses it, credentials substituted (the exact-build secret); the
    URL as written in apps.json or a manifest goes through ``repo_url`` first."""
    text = _text(value, what, error)
    if len(text) > 2048 or not _GIT_URL.fullmatch(text) or not text.isprintable():
        raise error(
            f"{what} {_shown(text)} is not an https://, http:// or file:// URL without spaces, quotes "
            "or backslashes: fix it in apps.json or .env."
        )
    return text


# -- repository URLs (apps.json entries, FRAPPE_PATH, URLs read back from manifests) ---------

_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
_LOOPBACK_HOSTS = {"localhost", "::1"}


def _is_loopback(host: str) -> bool:
    """localhost or a loopback IP literal; never a name like ``127.0.0.1.attacker.example``."""
    import ipaddress

    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def repo_url_problems(url: str, what: str) -> list[tuple[str, str]]:
    """Every rule a repository URL breaks, as ``(code, sentence)``: the one URL rule set.

    https (plain http only to a loopback mirror, file:// for local mirrors); no SSH; never an
    option, a space or a control character; a ``${VAR}`` placeholder only as the whole user
    part (``https://${VAR}@host/org/repo``); no credential written into the URL.
    """
    from urllib.parse import urlsplit

    if url.startswith("-") or any(c.isspace() or not c.isprintable() for c in url):
        return [("url-option", f"{what} cannot start with '-' or hold spaces or control characters: fix it.")]
    if url.startswith(("git@", "ssh://")) or _SCP_LIKE.match(url):
        return [
            (
                "apps-ssh",
                f"{what} is an SSH URL: the image build has no SSH key and bench clones over https; "
                "use https://${TOKEN_VAR}@github.com/org/repo.git with the token in .env.",
            )
        ]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return [("url-invalid", f"{what} is not a valid URL: write it as https://host/org/repo.git.")]
    problems = _scheme_problems(parts.scheme, host, parts.netloc, what)
    return problems + _placeholder_problems(url, parts.netloc, what)


def _scheme_problems(scheme: str, host: str, netloc: str, what: str) -> list[tuple[str, str]]:
    if scheme == "http" and not _is_loopback(host):
        return [
            (
                "apps-http",
                f"{what} uses plain http to {_shown(host)}: the token would cross the network "
                "unencrypted; use https (plain http is allowed only to a loopback mirror).",
            )
        ]
    if scheme not in {"https", "http", "file"}:
        shown = repr(scheme) if scheme.isalnum() else "(none)"
        return [
            ("apps-scheme", f"{what} has scheme {shown}: use https://..., or file:// for a local mirror.")
        ]
    if scheme != "file" and not host:
        return [("url-invalid", f"{what} names no host: write it as https://host/org/repo.git.")]
    return []


def _placeholder_problems(url: str, netloc: str, what: str) -> list[tuple[str, str]]:
    userinfo, _, hostport = netloc.rpartition("@")
    outside = url.replace(netloc, hostport, 1) if netloc else url
    if "${" in outside:
        return [
            (
                "url-placeholder-place",
                f"{what} has a ${{VAR}} placeholder outside the user part: a token belongs only "
                "in https://${VAR}@host/org/repo; move it there.",
            )
        ]
    if (userinfo and not _PLACEHOLDER.fullmatch(userinfo)) or TOKEN_SHAPE.search(url):
        return [
            (
                "apps-raw-token",
                f"{what} has a credential written into it, which would be committed and leak: "
                "replace it with a ${VAR} placeholder and put the token in .env.",
            )
        ]
    return []


def repo_url(value: object, what: str, error: ErrorType = ConfigError) -> str:
    """A git repository URL that passes every rule of ``repo_url_problems`` (never an option)."""
    text = _text(value, what, error)
    problems = repo_url_problems(text, what)
    if problems:
        raise error(problems[0][1])
    return text


# -- rollback (deploy records, backups in the state folder) -------------------------------------

_DEPLOY_ID = re.compile(r"\d{8}T\d{6}Z")
_BACKUP_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def deploy_id(value: object, what: str = "the deploy id", error: ErrorType = ConfigError) -> str:
    """A deploy id: the UTC start stamp of a deploy (``20261201T165500Z``), which names its
    backup folder on the target and its record in ``deploys/``."""
    text = _text(value, what, error)
    if not _DEPLOY_ID.fullmatch(text):
        raise error(f"{what} {_shown(text)} is not a deploy id: use a record's stamp, like 20261201T165500Z.")
    return text


def backup_copy(value: object, folder: str, what: str, error: ErrorType = ConfigError) -> str:
    """The path of a backup copy, which must be a plain file name directly in ``folder`` (the
    deploy's ``backups/<deploy id>/<site>`` in the target's state folder): a record cannot make
    rollback read, or restore, any other file of the target."""
    text = _text(value, what, error)
    name = text.removeprefix(folder.rstrip("/") + "/")
    if name == text or not _BACKUP_FILE.fullmatch(name) or ".." in name:
        raise error(f"{what} is not a backup file in {folder}: the record was edited; restore it from git.")
    return text


def sha256_hex(value: object, what: str = "the sha256", error: ErrorType = ConfigError) -> str:
    """A sha256 digest as 64 lower-case hex characters."""
    text = _text(value, what, error)
    if not _SHA256.fullmatch(text):
        raise error(f"{what} is not a sha256 (64 hex characters): fix it.")
    return text


# -- package mirrors (PIP_INDEX_URL, NPM_REGISTRY: build args of imagekit's Containerfile) -------

_INDEX_URL = re.compile(r"https?://[^\s'\"`\\]+")


def index_url(value: object, what: str, error: ErrorType = ConfigError) -> str:
    """A package index or registry URL: http(s), printable, and without credentials (it is a
    build arg, which the image history keeps for anyone who can pull the image)."""
    text = _text(value, what, error)
    host = text.partition("//")[2].partition("/")[0]
    if "@" in host or "${" in text or TOKEN_SHAPE.search(text):
        raise error(
            f"{what} holds a credential, but it becomes a build arg, which the image history keeps "
            "for anyone to read: use a mirror that needs no credentials in its URL."
        )
    if len(text) > 2048 or not _INDEX_URL.fullmatch(text) or not text.isprintable():
        raise error(
            f"{what} {_shown(text)} is not an http:// or https:// URL without spaces, quotes or "
            "backslashes: fix it in .env."
        )
    return text


_IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_digest(value: object, what: str = "the image digest", error: ErrorType = ConfigError) -> str:
    """A registry digest, ``sha256:`` and 64 lower-case hex characters (docker push, records)."""
    text = _text(value, what, error)
    if not _IMAGE_DIGEST.fullmatch(text):
        raise error(f"{what} is not an image digest (sha256: and 64 hex characters): fix it.")
    return text
