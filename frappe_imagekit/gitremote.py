"""The only module that talks to git (through gitpython, imported lazily).

Credentials never reach argv. A URL like ``https://${DE_MACRS_PAT}@github.com/org/repo`` is split:
git gets ``https://github.com/org/repo`` on its command line, and the user part travels as an
``Authorization: Basic`` header in git's own config, passed through the environment of the git
child only (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``), scoped to that
origin. Credential helpers and prompts are switched off, so a bad token fails fast instead of
hanging or being papered over by a stored credential.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from frappe_imagekit import validate
from frappe_imagekit.errors import ExitCode, GitError
from frappe_imagekit.redact import Redactor

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GitAuthError(GitError):
    """The remote refused our credentials (401/403) or wanted some we did not have."""

    kind = "auth"


class GitUnreachableError(GitError):
    """The host could not be resolved or refused the connection."""

    kind = "unreachable"


class GitTimeoutError(GitError):
    """The remote did not answer within the timeout."""

    kind = "timeout"


class GitRepoNotFoundError(GitError):
    """The server answered but has no such repository (or hides it from this token)."""

    kind = "missing-repo"


class GitURLRefused(GitError):
    """The URL breaks the repository URL rules (``validate.repo_url_problems``): never run."""

    kind = "bad-url"
    exit_code = ExitCode.VALIDATION


class GitCommandFailed(GitError):
    """Any other git failure; the message carries git's own (redacted) last line."""

    kind = "failed"


@dataclass(frozen=True)
class RemoteAccess:
    """How to reach a remote: the credential-free URL for argv and the env for the git child."""

    url: str
    env: dict[str, str]
    secrets: tuple[str, ...]

    def redactor(self) -> Redactor:
        return Redactor(self.secrets)


def expand_placeholders(text: str, env: Mapping[str, str], error: type[GitError] = GitCommandFailed) -> str:
    """Replace each ``${VAR}`` with its value; raise ``error`` naming a missing variable."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not env.get(name):
            raise error(f"{name} is empty or not set in .env: set it before resolving refs.")
        return env[name]

    return _PLACEHOLDER.sub(value, text)


def prepare_access(url_with_placeholders: str, env: Mapping[str, str], token_var: str | None) -> RemoteAccess:
    """Split a URL into a credential-free URL and an env carrying the credentials.

    The user part of the URL (``${VAR}``, ``TOKEN``, ``user:${VAR}``) becomes a basic-auth
    header; a token given only through ``token_var`` is used as the user part. The URL must
    pass the repository URL rules first (``checked_url``): no option, no placeholder outside
    the user part, so nothing from ``env`` can reach argv.
    """
    parts = urlsplit(checked_url(url_with_placeholders))
    userinfo, _, hostport = parts.netloc.rpartition("@")
    secrets: list[str] = []
    if not userinfo and token_var:
        userinfo = "${" + validate.env_name(token_var, "the token variable", GitURLRefused) + "}"
    credentials = _expand_userinfo(userinfo, env, secrets) if userinfo else None
    clean = urlunsplit(parts._replace(netloc=hostport))
    child_env = _base_env()
    if credentials is not None:
        origin = urlunsplit(urlsplit(clean)._replace(path="/", query="", fragment=""))
        header = "Authorization: Basic " + base64.b64encode(credentials.encode()).decode()
        secrets.append(header.split()[-1])
        _add_config(child_env, f"http.{origin}.extraHeader", header)
    return RemoteAccess(url=clean, env=child_env, secrets=tuple(secrets))


def checked_url(url: str) -> str:
    """``url`` if it passes the repository URL rules, else ``GitURLRefused``.

    The same rules as apps.json (``validate.repo_url_problems``), except that a literal user
    part is allowed here: it never reaches argv (it travels as a header), and apps.json has
    its own rule that it must not be committed.
    """
    text = validate.not_an_option(url, "the repository URL", GitURLRefused)
    problems = validate.repo_url_problems(text, "the repository URL")
    if problems and problems[0][0] == "apps-raw-token":  # allowed in the user part only
        problems = validate.repo_url_problems(_without_userinfo(text), "the repository URL")
    if problems:
        raise GitURLRefused(problems[0][1])
    return text


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _expand_userinfo(userinfo: str, env: Mapping[str, str], secrets: list[str]) -> str:
    """``user:pass`` with placeholders expanded and literals URL-decoded; ``:`` added if absent."""
    pieces: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(userinfo):
        pieces.append(unquote(userinfo[pos : match.start()]))
        value = expand_placeholders(match.group(0), env, GitAuthError)
        secrets.append(value)
        pieces.append(value)
        pos = match.end()
    literal_tail = unquote(userinfo[pos:])
    pieces.append(literal_tail)
    if not _PLACEHOLDER.search(userinfo):
        secrets.extend(p for p in unquote(userinfo).split(":") if p)  # a pasted raw token
    credentials = "".join(pieces)
    return credentials if ":" in credentials else credentials + ":"


def _base_env() -> dict[str, str]:
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GCM_INTERACTIVE": "never",
        "LC_ALL": "C",
        "LANGUAGE": "C",
    }
    # Keep the caller's own GIT_CONFIG_* entries, then reset credential helpers: a stored
    # credential must not hide a bad token.
    count = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    env["GIT_CONFIG_COUNT"] = str(count)
    _add_config(env, "credential.helper", "")
    return env


def _add_config(env: dict[str, str], key: str, value: str) -> None:
    index = int(env["GIT_CONFIG_COUNT"])
    env[f"GIT_CONFIG_KEY_{index}"] = key
    env[f"GIT_CONFIG_VALUE_{index}"] = value
    env["GIT_CONFIG_COUNT"] = str(index + 1)


def _with_speed_limit(env: dict[str, str], timeout: float) -> dict[str, str]:
    """Also ask git's HTTP layer to give up on a stalled transfer (the watchdog is the backstop)."""
    env = dict(env)
    _add_config(env, "http.lowSpeedLimit", "1")
    _add_config(env, "http.lowSpeedTime", str(max(1, math.ceil(timeout))))
    return env


def ls_remote(
    url_with_placeholders: str,
    env: Mapping[str, str],
    token_var: str | None,
    timeout: float,
) -> dict[str, str]:
    """Map every ref of the remote (``HEAD``, ``refs/heads/x``, ``refs/tags/y``) to a commit SHA.

    Annotated tags map to the commit they point at (the peeled ``^{}`` line wins).
    Raises a ``GitError`` subclass (auth, unreachable, timeout, missing-repo, failed) whose
    message is redacted and names ``token_var`` where it matters.
    """
    access = prepare_access(url_with_placeholders, env, token_var)
    output = _git(["ls-remote", "--", access.url], access, timeout, token_var)
    return parse_ls_remote(output)


def parse_ls_remote(output: str) -> dict[str, str]:
    """Parse ``<sha>\\t<ref>`` lines; a peeled ``ref^{}`` line replaces the tag object's sha."""
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in output.splitlines():
        sha, _, ref = line.strip().partition("\t")
        if not ref:
            continue
        if ref.endswith("^{}"):
            peeled[ref[:-3]] = sha
        else:
            refs[ref] = sha
    refs.update(peeled)
    return refs


def _git(
    args: list[str],
    access: RemoteAccess,
    timeout: float,
    token_var: str | None,
    cwd: str | None = None,
) -> str:
    """Run ``git <args>`` with the access env; map failures to ``GitError`` subclasses."""
    import git  # lazy: `imagekit --help` must not import gitpython

    runner = git.Git(cwd)
    try:
        output = runner.execute(
            ["git", *args],
            env=_with_speed_limit(access.env, timeout),
            kill_after_timeout=timeout,
            stdout_as_string=True,
        )
        return str(output)
    except git.GitCommandNotFound as exc:
        raise GitCommandFailed("git is not installed: install git and try again.") from exc
    except git.GitCommandError as exc:
        raise classify_failure(_raw_stderr(exc), access, timeout, token_var) from None


def _raw_stderr(exc: Exception) -> str:
    """gitpython wraps stderr as ``\n  stderr: '...'``; unwrap it."""
    text = str(getattr(exc, "stderr", "") or "")
    text = text.strip()
    if text.startswith("stderr: '") and text.endswith("'"):
        text = text[len("stderr: '") : -1]
    return text


def classify_failure(stderr: str, access: RemoteAccess, timeout: float, token_var: str | None) -> GitError:
    """Turn git's stderr into one actionable, redacted sentence of the right ``GitError`` type."""
    redactor = access.redactor()
    text = redactor.redact(stderr)
    url = redactor.redact(access.url)
    low = text.lower()
    if ("timeout:" in low and "did not complete" in low) or "operation too slow" in low:
        return GitTimeoutError(f"no answer from {url} within {timeout:g} s: check the network or the server.")
    if _UNREACHABLE_HINTS.search(low):
        return GitUnreachableError(f"cannot reach {url} ({_last_line(text)}): check the URL and the network.")
    if _AUTH_HINTS.search(low):
        if token_var:
            return GitAuthError(
                f"authentication refused: is {token_var} expired or missing access to this repository?"
            )
        return GitAuthError(
            f"authentication refused by {url}: the repository needs a token; write the URL as "
            "https://${VAR}@host/org/repo and set VAR in .env."
        )
    if _NOT_FOUND_HINTS.search(low):
        hint = f", or whether {token_var} has access to it" if token_var else ""
        return GitRepoNotFoundError(f"repository {url} not found: check the URL{hint}.")
    return GitCommandFailed(f"git failed for {url}: {_last_line(text)}.")


_AUTH_HINTS = re.compile(
    r"authentication failed|could not read (username|password)|\b401\b|\b403\b"
    r"|invalid username or password|permission denied|access denied"
)
_UNREACHABLE_HINTS = re.compile(
    r"could not resolve host|couldn't resolve host|failed to connect|couldn't connect"
    r"|connection refused|network is unreachable|no route to host|connection timed out"
)
_NOT_FOUND_HINTS = re.compile(
    r"not found|does not appear to be a git repository|\b404\b|no such file or directory"
)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "no message"
    line = line.removeprefix("fatal: ").removeprefix("error: ")
    return re.sub(r"^unable to access '[^']*': ", "", line).rstrip(".")


def workspace_commit(path: str | os.PathLike[str]) -> tuple[str | None, bool | None]:
    """HEAD sha of the git repo holding ``path`` and whether tracked files are modified.

    ``(None, None)`` when ``path`` is not inside a git repo or the repo has no commit yet.
    Untracked files (``.env``, new build records) do not count as dirty.
    """
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None, None
    with repo:
        try:
            sha = repo.head.commit.hexsha
        except ValueError:  # unborn HEAD
            return None, None
        return sha, repo.is_dirty(untracked_files=False)


def count_commits_between(
    url: str,
    env: Mapping[str, str],
    token_var: str | None,
    old_sha: str,
    new_sha: str,
    timeout: float,
) -> int | None:
    """Commits in ``old..new``: positive when ``new`` is ahead, negative when behind.

    Fetches both commits (blobless when the server allows) into a temporary bare repo.
    ``None`` when the histories diverge or are unrelated, or a commit no longer exists.
    Raises a ``GitError`` subclass when the remote cannot be reached or refuses us.
    """
    old_sha = validate.commit_sha(old_sha, "the older commit", GitURLRefused)
    new_sha = validate.commit_sha(new_sha, "the newer commit", GitURLRefused)
    if old_sha == new_sha:
        return 0
    access = prepare_access(url, env, token_var)
    with tempfile.TemporaryDirectory(prefix="imagekit-count-") as tmp:
        _git(["init", "-q", "--bare", "--", tmp], access, timeout, token_var)
        if not _fetch_commits(access, tmp, [old_sha, new_sha], timeout, token_var):
            return None
        return _signed_distance(access, tmp, old_sha, new_sha, timeout, token_var)


def _fetch_commits(
    access: RemoteAccess,
    repo: str,
    shas: list[str],
    timeout: float,
    token_var: str | None,
    *,
    shallow: bool = False,
) -> bool:
    """Fetch ``shas`` by id (``shallow``: the commits alone, at depth 1; else their history,
    blobless); if the server refuses, fetch every branch and tag blobless and look for them."""
    base = ["fetch", "-q", "--no-tags", "--filter=blob:none", "--", access.url]
    by_id = ["fetch", "-q", "--no-tags", "--depth", "1", "--", access.url] if shallow else base
    try:
        _git([*by_id, *shas], access, timeout, token_var, cwd=repo)
        return True
    except GitCommandFailed:
        pass
    except GitRepoNotFoundError:
        if not _repo_exists(access, timeout, token_var):
            raise
    refspecs = ["+refs/heads/*:refs/remotes/r/*", "+refs/tags/*:refs/tags/*"]
    _git([*base, *refspecs], access, timeout, token_var, cwd=repo)
    return all(_has_commit(access, repo, sha, timeout, token_var) for sha in shas)


def _repo_exists(access: RemoteAccess, timeout: float, token_var: str | None) -> bool:
    """``fetch <sha>`` says "not found" for a missing commit too: ask ls-remote which it was."""
    _git(["ls-remote", "--heads", "--", access.url], access, timeout, token_var)
    return True


def _has_commit(access: RemoteAccess, repo: str, sha: str, timeout: float, token_var: str | None) -> bool:
    try:
        _git(
            ["cat-file", "-e", "--end-of-options", f"{sha}^{{commit}}"], access, timeout, token_var, cwd=repo
        )
        return True
    except GitError:
        return False


def _signed_distance(
    access: RemoteAccess, repo: str, old: str, new: str, timeout: float, token_var: str | None
) -> int | None:
    def is_ancestor(a: str, b: str) -> bool:
        try:
            _git(
                ["merge-base", "--is-ancestor", "--end-of-options", a, b],
                access,
                timeout,
                token_var,
                cwd=repo,
            )
            return True
        except GitError:
            return False

    def count(a: str, b: str) -> int:
        out = _git(
            ["rev-list", "--count", "--end-of-options", f"{a}..{b}"], access, timeout, token_var, cwd=repo
        )
        return int(out.strip())

    if is_ancestor(old, new):
        return count(old, new)
    if is_ancestor(new, old):
        return -count(new, old)
    return None


def commit_exists(url: str, env: Mapping[str, str], token_var: str | None, sha: str, timeout: float) -> bool:
    """Whether the remote still has commit ``sha`` (fetched by id, depth 1; where the server
    refuses that, every branch and tag is fetched blobless and searched)."""
    sha = validate.commit_sha(sha, "the recorded commit", GitCommandFailed)
    access = prepare_access(url, env, token_var)
    with tempfile.TemporaryDirectory(prefix="imagekit-has-") as tmp:
        _git(["init", "-q", "--bare", "--", tmp], access, timeout, token_var)
        return _fetch_commits(access, tmp, [sha], timeout, token_var, shallow=True)


# ---------------------------------------------------------------- the app's name (appname)

APP_FILES = ("pyproject.toml", "setup.cfg", "setup.py")  # the files bench names an app from
MAX_APP_FILE_BYTES = 256 * 1024  # a larger one is not read (it names no app bench installs)
MAX_FOLDERS = 500  # top-level folders searched for hooks.py


@dataclass(frozen=True)
class AppFiles:
    """The top-level files bench names an app from (``APP_FILES`` present at the commit, as
    text) and the top-level folders holding ``hooks.py``: remote content, checked by ``appname``."""

    files: dict[str, str]
    hooks_folders: tuple[str, ...]


def read_app_files(
    url: str, env: Mapping[str, str], token_var: str | None, sha: str, ref: str, timeout: float,
    *, with_hooks: bool = False,
) -> AppFiles:  # fmt: skip
    """Read ``APP_FILES`` and the ``hooks.py`` folders of commit ``sha`` without a checkout
    (``with_hooks``: the text of each ``FOLDER/hooks.py`` too, in ``files``).

    A shallow, blobless fetch of the commit (its trees only; a server that refuses to fetch by
    commit gets ``ref``, checked against ``sha``), then the few blobs named, by id; a server
    that refuses those gets one shallow fetch of the whole commit instead. Raises a
    ``GitError`` subclass like ``ls_remote``.
    """
    sha = validate.commit_sha(sha, "the resolved commit", GitURLRefused)
    ref = validate.git_ref(ref, "the ref", GitURLRefused)
    access = prepare_access(url, env, token_var)
    access = RemoteAccess(access.url, {**access.env, "GIT_LITERAL_PATHSPECS": "1"}, access.secrets)
    with tempfile.TemporaryDirectory(prefix="imagekit-name-") as tmp:
        try:
            return _read_commit(access, f"{tmp}/blobless", sha, ref, timeout, token_var, blobless=True,
                                with_hooks=with_hooks)  # fmt: skip
        except _BlobsRefused:
            return _read_commit(access, f"{tmp}/whole", sha, ref, timeout, token_var, blobless=False,
                                with_hooks=with_hooks)  # fmt: skip


class _BlobsRefused(Exception):
    """The server sent the trees but will not send a blob by its id."""


def _read_commit(
    access: RemoteAccess, repo: str, sha: str, ref: str, timeout: float, token_var: str | None, *,
    blobless: bool, with_hooks: bool = False,
) -> AppFiles:  # fmt: skip
    _init(access, repo, timeout, token_var, promisor=blobless)
    _fetch_commit(access, repo, sha, ref, timeout, token_var, blobless=blobless)
    root = _tree_entries(access, repo, sha, [], timeout, token_var)
    folders = [path for kind, _, path in root if kind == "tree"][:MAX_FOLDERS]
    wanted = [f"{folder}/hooks.py" for folder in folders]
    hooks = _tree_entries(access, repo, sha, wanted, timeout, token_var) if wanted else []
    blobs = {path: oid for kind, oid, path in root if kind == "blob" and path in APP_FILES}
    if with_hooks:
        blobs.update({path: oid for kind, oid, path in hooks if kind == "blob"})
    files = _read_blobs(access, repo, blobs, timeout, token_var, blobless=blobless)
    return AppFiles(files, tuple(path.split("/", 1)[0] for kind, _, path in hooks if kind == "blob"))


def _init(access: RemoteAccess, repo: str, timeout: float, token_var: str | None, *, promisor: bool) -> None:
    """A bare repository with ``origin``; a promisor remote (blobless fetches allowed) or not."""
    _git(["init", "-q", "--bare", "--", repo], access, timeout, token_var)
    config = [("remote.origin.url", access.url)]
    if promisor:
        config += [("remote.origin.promisor", "true"), ("extensions.partialClone", "origin")]
    for key, value in config:
        _git(["config", "--end-of-options", key, value], access, timeout, token_var, cwd=repo)


def _fetch_commit(
    access: RemoteAccess, repo: str, sha: str, ref: str, timeout: float, token_var: str | None, *,
    blobless: bool,
) -> None:  # fmt: skip
    fetch = ["fetch", "-q", "--no-tags", "--depth", "1", *(["--filter=blob:none"] if blobless else [])]
    try:
        _git([*fetch, "--", "origin", sha], access, timeout, token_var, cwd=repo)
        return
    except (GitCommandFailed, GitRepoNotFoundError):
        pass  # a server that refuses to fetch by commit (upload-pack v0): fetch the ref instead
    _git([*fetch, "--", "origin", ref], access, timeout, token_var, cwd=repo)
    got = _git(["rev-parse", "--verify", "--end-of-options", "FETCH_HEAD^{commit}"], access, timeout,
               token_var, cwd=repo).strip()  # fmt: skip
    if got != sha:
        raise GitCommandFailed(
            f"{access.redactor().redact(access.url)} moved {ref} to {got[:12]} while it was read "
            f"(resolved {sha[:12]}): run the command again."
        )


def _tree_entries(
    access: RemoteAccess, repo: str, sha: str, paths: list[str], timeout: float, token_var: str | None
) -> list[tuple[str, str, str]]:
    """``(type, oid, path)`` of the commit's top level, or of ``paths`` (those that exist)."""
    args = ["ls-tree", "-z", "--end-of-options", sha]
    out = _git([*args, "--", *paths] if paths else args, access, timeout, token_var, cwd=repo)
    entries = []
    for item in out.split("\0"):
        head, tab, path = item.partition("\t")
        fields = head.split()
        if tab and len(fields) == 3:
            entries.append((fields[1], fields[2], path))
    return entries


def _read_blobs(
    access: RemoteAccess, repo: str, blobs: Mapping[str, str], timeout: float, token_var: str | None, *,
    blobless: bool,
) -> dict[str, str]:  # fmt: skip
    """The text of each named blob (fetched by id in one request after a blobless fetch); one
    larger than ``MAX_APP_FILE_BYTES`` is left out."""
    if not blobs:
        return {}
    oids = [validate.commit_sha(oid, "a file id", GitCommandFailed) for oid in blobs.values()]
    if blobless:
        with contextlib.suppress(GitCommandFailed, GitRepoNotFoundError):  # present already, or refused
            _git(["fetch", "-q", "--no-tags", "--", "origin", *oids], access, timeout, token_var, cwd=repo)
    files = {}
    for path, oid in blobs.items():
        try:
            size = _git(["cat-file", "-s", "--end-of-options", oid], access, timeout, token_var, cwd=repo)
            if int(size.strip() or 0) <= MAX_APP_FILE_BYTES:
                files[path] = _git(
                    ["cat-file", "blob", "--end-of-options", oid], access, timeout, token_var, cwd=repo
                )
        except (GitCommandFailed, GitRepoNotFoundError):
            if blobless:
                raise _BlobsRefused from None
            raise
    return files
