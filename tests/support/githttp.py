"""Real git remotes for tests: bare repos in tmp_path, served over smart HTTP behind basic auth.

``GitHTTPServer`` runs git's own ``git http-backend`` (CGI) behind a ``ThreadingHTTPServer`` on
127.0.0.1 with a random port, so a wrong token meets a real 401 from a real git HTTP exchange.
A request is accepted when the token is the basic-auth username (any password, like
``https://TOKEN@github.com``) or the password (like ``https://user:TOKEN@host``).

``make_remote`` builds a bare repo with commits, lightweight and annotated tags and branches.
``HangingServer`` accepts TCP connections and never answers (for timeouts).

Fixtures: ``git_identity`` (autouse-able), ``git_remote``, ``git_http_server``, ``hanging_server``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CANARY_TOKEN = "ghp_CANARY0123456789abcdefTOKEN"  # the token git_http_server accepts

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Imagekit Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Imagekit Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git (tests only) and return its stdout; raise with stderr on failure."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class Remote:
    """A bare repository and what it holds."""

    bare: Path
    work: Path
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> commit sha (peeled)
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit sha
    annotated: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, message: str, branch: str = "main") -> str:
        """Add a commit on ``branch`` and push it; return its sha."""
        git("checkout", "-q", branch, cwd=self.work)
        with (self.work / "history.txt").open("a") as history:
            history.write(message + "\n")
        git("add", "history.txt", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", branch, cwd=self.work)
        sha = git("rev-parse", "HEAD", cwd=self.work)
        self.branches[branch] = sha
        return sha

    def commit_files(self, message: str, files: dict[str, str], branch: str = "main") -> str:
        """Add ``files`` (path -> text) in one commit on ``branch`` and push it; return its sha."""
        git("checkout", "-q", branch, cwd=self.work)
        for path, text in files.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text)
        git("add", "--", *files, cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", branch, cwd=self.work)
        self.branches[branch] = git("rev-parse", "HEAD", cwd=self.work)
        return self.branches[branch]

    def tag(self, name: str, *, annotated: bool = False, branch: str = "main") -> str:
        """Tag the tip of ``branch`` and push the tag; return the commit sha."""
        sha = self.branches[branch]
        if annotated:
            git("tag", "-a", name, "-m", f"release {name}", sha, cwd=self.work)
            self.annotated.add(name)
        else:
            git("tag", name, sha, cwd=self.work)
        git("push", "-q", "origin", f"refs/tags/{name}", cwd=self.work)
        self.tags[name] = sha
        return sha

    def branch(self, name: str, start: str = "main") -> str:
        git("branch", name, self.branches[start], cwd=self.work)
        git("push", "-q", "origin", name, cwd=self.work)
        self.branches[name] = self.branches[start]
        return self.branches[name]


def make_remote(
    root: Path,
    name: str = "app",
    *,
    tags: Sequence[str] = ("v15.16.2", "v15.17.0"),
    annotated: Sequence[str] = ("v15.17.0",),
    branches: Sequence[str] = ("version-15", "develop"),
) -> Remote:
    """A bare repo ``root/name.git`` with a commit per tag, the tags, and extra branches.

    Each tag gets its own commit on main (annotated ones as annotated tags); each extra branch
    then forks from main and gets one commit of its own, so every ref has a distinct sha.
    """
    bare = root / f"{name}.git"
    work = root / f"{name}-work"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(work))
    git("remote", "add", "origin", str(bare), cwd=work)
    remote = Remote(bare=bare, work=work)
    remote.branches["main"] = ""
    git("commit", "-q", "--allow-empty", "-m", "initial", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    remote.branches["main"] = git("rev-parse", "HEAD", cwd=work)
    for tag in tags:
        remote.commit(f"release {tag}")
        remote.tag(tag, annotated=tag in annotated)
    for branch in branches:
        remote.branch(branch)
        remote.commit(f"work on {branch}", branch=branch)
    return remote


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def make_small_remote(root: Path, name: str, tag: str) -> tuple[Path, str]:
    """A bare repo with one commit on main tagged ``tag``, built with plumbing (fast).

    Returns (bare repo path, commit sha). For tests and benchmarks that need many remotes.
    """
    bare = root / f"{name}.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    sha = git("commit-tree", EMPTY_TREE, "-m", f"{name} {tag}", cwd=bare)
    git("update-ref", "refs/heads/main", sha, cwd=bare)
    git("update-ref", f"refs/tags/{tag}", sha, cwd=bare)
    return bare, sha


class _Handler(BaseHTTPRequestHandler):
    server: GitHTTPServer._Server  # type: ignore[name-defined]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        owner: GitHTTPServer = self.server.owner
        owner.requests.append(f"{self.command} {self.path}")
        with owner.track_in_flight():
            self._serve_tracked(owner)

    def _serve_tracked(self, owner: GitHTTPServer) -> None:
        if owner.latency:
            time.sleep(owner.latency)
        user = self._authorized(owner.tokens)
        if user is None:
            owner.rejected += 1
            body = b"authentication required\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="imagekit-test"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._run_backend(owner.root, user)

    def _authorized(self, tokens: set[str]) -> str | None:
        if not tokens:
            return "anonymous"
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return None
        user, _, password = decoded.partition(":")
        return "token-user" if user in tokens or password in tokens else None

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _run_backend(self, root: Path, user: str) -> None:
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol") and not self.server.owner.protocol_v0_only:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        body = self._read_body() if self.command == "POST" else b""
        env["CONTENT_LENGTH"] = str(len(body))
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHTTPServer:
    """Serves every bare repo under ``root`` at ``http://127.0.0.1:PORT/<name>.git``."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        owner: GitHTTPServer

    def __init__(self, root: Path, tokens: Sequence[str] = (), latency: float = 0.0) -> None:
        self.root = root
        self.tokens = set(tokens)
        self.latency = latency
        self.requests: list[str] = []
        self.rejected = 0
        # protocol v0 only: upload-pack then refuses to fetch a commit that no ref points to
        # (v2 serves any commit by id), like servers without uploadpack.allowReachableSHA1InWant.
        self.protocol_v0_only = False
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._httpd = self._Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @contextlib.contextmanager
    def track_in_flight(self) -> Iterator[None]:
        """Count concurrent requests (``max_in_flight`` proves clients ran in parallel)."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def url(self, repo: str, userinfo: str = "") -> str:
        """``http://[userinfo@]127.0.0.1:PORT/repo`` (userinfo may hold a ``${VAR}``)."""
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{repo}"

    def start(self) -> GitHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GitHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HangingServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def url(self, repo: str = "app.git") -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit identity and no user/system git config for the code under test."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def git_remote(tmp_path: Path) -> Remote:
    """A bare repo with tags v15.16.2 and v15.17.0 (annotated), branches version-15 and develop."""
    return make_remote(tmp_path / "remotes", "app")


@pytest.fixture
def git_http_server(git_remote: Remote) -> Iterator[GitHTTPServer]:
    """Serves ``git_remote``'s folder over smart HTTP; the accepted token is in ``.tokens``."""
    with GitHTTPServer(git_remote.bare.parent, tokens=[CANARY_TOKEN]) as srv:
        yield srv


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    srv = HangingServer()
    yield srv
    srv.stop()


class AuthCaptureServer:
    """An "attacker" HTTP server on 127.0.0.1: records every request line and Authorization
    header it is sent and answers 404, so a test can prove no token was sent to it."""

    class _Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            owner: AuthCaptureServer = self.server.owner  # type: ignore[attr-defined]
            owner.requests.append(f"{self.command} {self.path}")
            owner.authorization.append(self.headers.get("Authorization", ""))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET  # noqa: N815

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.authorization: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, repo: str = "x.git", userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{repo}"

    def saw_secret(self, token: str) -> bool:
        """Whether any request carried ``token`` (raw, or in a basic-auth header)."""
        decoded = []
        for header in self.authorization:
            with contextlib.suppress(ValueError):
                decoded.append(base64.b64decode(header.removeprefix("Basic ")).decode("utf-8", "replace"))
        return any(token in text for text in [*self.requests, *self.authorization, *decoded])

    def __enter__(self) -> AuthCaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def attacker() -> Iterator[AuthCaptureServer]:
    with AuthCaptureServer() as srv:
        yield srv
