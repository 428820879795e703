"""What ``site new``, ``sandbox`` and ``rollback`` say to bench about a site, in one place.

- ``new_site_argv``/``new_site_stdin``: ``bench new-site`` in a running backend, its passwords on
  stdin in the order of the real prompts (tests/fixtures/frappe-v15-lab/48-new-site-s2: root,
  then the Administrator password twice; 51-new-site-source-sql: with a dump only the root
  password is read).
- ``restore_argv``: ``bench --site S restore`` (54-restore-existing-with-files), password on stdin.
- ``redrawn``: what a terminal shows of one line of bench's output (its progress bars redraw
  with ``\r``: tests/fixtures/frappe-v15-lab/72-migrate-progress-bars-redrawn).
- ``last_words``: the line that says why bench failed, without getpass's prompts, progress bars
  redrawn, or any secret (masked ``***``).
- ``env_password``: one password of an env file, one line (stdin carries it), or ``ConfigError``.
- ``archive_problem``: a files archive's members checked before they are unpacked into a site.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from frappe_imagekit import validate
from frappe_imagekit.envfile import parse_env_text
from frappe_imagekit.errors import ConfigError, UsageError

SCOPE = "--mariadb-user-host-login-scope=%"  # frappe_docker's: the db user logs in from other containers
RESTORE_PID = "/tmp/.imagekit-restore.pid"  # in the backend: the shell running bench restore
RESTORE_STATUS = "/tmp/.imagekit-restore.status"  # ... and bench's exit status when it ended
PROMPTS = ("Warning: Password input may be echoed.", "MySQL root password:", "Set Administrator password:",
           "Re-enter Administrator password:")  # fmt: skip


def new_site_argv(
    container: str, site: str, *, source_sql: str | None = None, apps: Sequence[str] = ()
) -> list[str]:
    """``docker exec -i C bench new-site S [--source-sql DUMP] SCOPE [--install-app A]...``: no
    password in it (they come on stdin)."""
    site = validate.site_name(site, "the site name", UsageError)
    argv = ["docker", "exec", "-i", "-e", "PYTHONUNBUFFERED=1", container, "bench", "new-site", site]
    if source_sql is not None:
        argv += ["--source-sql", validate.not_an_option(source_sql, "the dump", UsageError)]
    argv.append(SCOPE)
    for app in apps:
        argv += ["--install-app", validate.app_name(app, "an app of the image", ConfigError)]
    return argv


def new_site_stdin(root_password: str, admin_password: str) -> bytes:
    """new-site's answers in the order it asks: the root password, then the Administrator
    password twice (set, re-enter); with --source-sql only the first is read (51)."""
    return f"{root_password}\n{admin_password}\n{admin_password}\n".encode()


def restore_argv(
    container_id: str, site: str, path: str, public_files: str | None = None, private_files: str | None = None
) -> list[str]:
    """``bench --site S restore FILE [--with-public-files P] [--with-private-files Q]`` in the
    container (54-restore-existing-with-files); the password goes to its stdin. Its shell
    records its pid and, when bench ends, bench's exit status (``RESTORE_PID``/``_STATUS``),
    so that an interrupted rollback can wait for it in the backend."""
    files = [*(["--with-public-files", public_files] if public_files else []),
             *(["--with-private-files", private_files] if private_files else [])]  # fmt: skip
    script = (
        f'rm -f {RESTORE_STATUS}; echo $$ > {RESTORE_PID}; "$@"; s=$?; echo $s > {RESTORE_STATUS}; exit $s'
    )
    return ["docker", "exec", "-i", container_id, "sh", "-c", script, "sh",
            "bench", "--site", site, "restore", path, *files]  # fmt: skip


def redrawn(line: str) -> str:
    """One line of bench's output as a terminal shows it: the last state of a progress bar that
    bench redraws with ``\r`` (``Updating DocTypes for frappe : [====] 100%``), trailing blanks
    dropped; a line without ``\r`` as it is."""
    return line.rstrip("\n").split("\r")[-1].rstrip()


def last_words(texts: Iterable[str | None], secrets: Sequence[str] = ()) -> str:
    """The last line that says something of the first of ``texts`` that has one (progress bars
    collapsed to their last state, getpass's prompts left out), at most 300 characters, every
    secret masked ``***``; "" when none has one."""
    for text in texts:
        lines = [redrawn(line).strip() for line in (text or "").split("\n")]
        lines = [line for line in lines if line and not line.startswith(PROMPTS)]
        if lines:
            return mask(lines[-1], secrets)[:300]
    return ""


def mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def env_password(env_text: str, env_file: str, var: str) -> str:
    """The value of ``var`` in the env file ("" when unset); ``ConfigError`` when it spans lines
    (bench reads one line from stdin)."""
    value = parse_env_text(env_text, env_file).values.get(var, "")
    if "\n" in value or "\r" in value:
        raise ConfigError(
            f"{var} in {env_file} spans lines: a password bench reads is one line; make it one."
        )
    return value


def archive_problem(names: Sequence[str], types: Sequence[str], folder: str) -> str | None:
    """Why the members of a frappe files archive (``tar tf``, and the type letter of each from
    ``tar tvf``) must not be unpacked with ``--strip-components 2`` into a site, or None. frappe
    writes ``./SITE/public/files/...`` (or ``private``); anything else -- an absolute path, a
    ``..``, another folder, a link or device -- is refused."""
    if len(names) != len(types):
        return "its listing is not one member a line"
    for name, kind in zip(names, types, strict=True):
        parts = name.rstrip("/").split("/")
        if name.startswith("/") or ".." in parts:
            return f"member {name[:120]!r} points outside the site"
        if kind not in ("-", "d"):
            return f"member {name[:120]!r} is not a plain file or folder"
        folders_above = kind == "d" and parts[:1] == ["."] and len(parts) <= 2
        if not folders_above and (parts[:1] != ["."] or len(parts) < 3 or not parts[1] or parts[2] != folder):
            return f"member {name[:120]!r} is not under ./SITE/{folder}/"
    return None
