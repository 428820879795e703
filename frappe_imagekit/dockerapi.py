"""The only user of the docker SDK: inspect, tag, untag, history and ``docker save`` as a stream.

Builds do not go through here: docker-py cannot build with BuildKit (no ``RUN --mount``, no
secrets; docker-py #2230), so builds run the docker CLI through ``dockercli``/``process``.
``docker`` is imported inside functions so that ``imagekit --help`` stays fast.

Every SDK failure leaves this module as a ``DockerError`` with one sentence naming the problem
and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frappe_imagekit.errors import DockerError

if TYPE_CHECKING:  # pragma: no cover
    import docker
    from docker import DockerClient
    from requests import Response

DEFAULT_HOST = "unix:///var/run/docker.sock"
SAVE_CHUNK = 4 * 1024 * 1024  # big reads: per-chunk Python overhead dominates small ones

_clients: dict[str, docker.DockerClient] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Daemon:
    """Which Docker daemon the SDK talks to, and why: the same one the docker CLI builds on."""

    address: str  # e.g. unix:///var/run/docker.sock, tcp://127.0.0.1:2375, ssh://me@host
    source: str  # "DOCKER_HOST", "DOCKER_CONTEXT=name", "docker context name", "default socket"
    tls: bool = False  # the context names TLS material (its folder under contexts/tls)

    def describe(self) -> str:
        """``unix:///var/run/docker.sock (docker context default)`` for plans and errors."""
        return f"{self.address} ({self.source})"


def docker_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The docker CLI's config folder: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    environ = os.environ if environ is None else environ
    named = environ.get("DOCKER_CONFIG")
    return Path(named) if named else Path(environ.get("HOME") or Path.home()) / ".docker"


def resolve_daemon(environ: Mapping[str, str] | None = None) -> Daemon:
    """The daemon the docker CLI would use, found the way the CLI finds it.

    ``$DOCKER_HOST`` wins, then ``$DOCKER_CONTEXT``, then ``currentContext`` of the CLI's
    config.json; the context ``default`` (or none) is the local socket. Contexts are read from
    the CLI's own store (``contexts/meta/<sha256 of name>/meta.json``), as ``docker context
    inspect`` does, so no docker process is started.
    """
    environ = os.environ if environ is None else environ
    if environ.get("DOCKER_HOST"):
        return Daemon(environ["DOCKER_HOST"], "DOCKER_HOST")
    config = docker_config_dir(environ)
    if environ.get("DOCKER_CONTEXT"):
        name, source = environ["DOCKER_CONTEXT"], f"DOCKER_CONTEXT={environ['DOCKER_CONTEXT']}"
    else:
        name, source = _current_context(config), ""
    if name in ("", "default"):
        return Daemon(DEFAULT_HOST, source or "docker context default")
    return _context_daemon(config, name, source or f"docker context {name}")


def _current_context(config: Path) -> str:
    try:
        data = json.loads((config / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as exc:
        raise DockerError(
            f"cannot read {config / 'config.json'} ({exc}): fix or remove it, or set DOCKER_HOST"
        ) from None
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name if isinstance(name, str) else ""


def _context_daemon(config: Path, name: str, source: str) -> Daemon:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest / "meta.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        host = data["Endpoints"]["docker"]["Host"]
    except FileNotFoundError:
        raise DockerError(
            f"docker context {name} ({source}) does not exist in {config}: create it with "
            f"`docker context create {name} --docker host=...`, or pick another one"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise DockerError(
            f"docker context {name} is unreadable ({meta}): recreate it with `docker context rm` "
            "and `docker context create`"
        ) from None
    if not isinstance(host, str) or not host:
        raise DockerError(f"docker context {name} names no docker host: recreate it with a --docker host=...")
    tls = (config / "contexts" / "tls" / digest / "docker").is_dir()
    return Daemon(host, source, tls=tls)


def daemon_address(docker_host: str | None = None) -> str:
    """The daemon address a client would use: the argument, else :func:`resolve_daemon`."""
    return docker_host or resolve_daemon().address


def _down_error(address: str) -> DockerError:
    return DockerError(
        f"the Docker daemon does not answer at {address}: start it "
        "(sudo systemctl start docker) or set DOCKER_HOST"
    )


def client(docker_host: str | None = None) -> docker.DockerClient:
    """A connected client (cached per address); ``DockerError`` when the daemon is down."""
    address = daemon_address(docker_host)
    with _lock:
        cached = _clients.get(address)
        if cached is not None:
            return cached
        explicit = docker_host is not None
        made = _connect(address, tls=not explicit and _uses_tls(), explicit=explicit)
        _clients[address] = made
        return made


def _uses_tls() -> bool:
    """TLS set up the CLI's way (DOCKER_TLS_VERIFY or a context with TLS): docker-py reads that
    only from the environment, so such daemons go through ``docker.from_env``."""
    return bool(os.environ.get("DOCKER_TLS_VERIFY")) or resolve_daemon().tls


def _connect(address: str, *, tls: bool, explicit: bool) -> docker.DockerClient:
    docker = _import_docker(address)
    try:
        if tls and not os.environ.get("DOCKER_HOST"):
            raise DockerError(
                f"the docker context for {address} uses TLS, which imagekit's SDK client cannot "
                "read from a context: set DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH instead"
            )
        made: DockerClient = docker.from_env() if tls else docker.DockerClient(base_url=address)
        made.ping()
    except DockerError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means "no daemon"
        raise _down_error(address if explicit else resolve_daemon().describe()) from exc
    return made


def _import_docker(address: str) -> Any:
    """Import the SDK without its SSH transport unless the daemon is reached over ssh://.

    docker-py imports paramiko eagerly for ssh:// hosts; that is ~90 ms of every build's start-up
    for a transport a local socket never uses. paramiko stays importable afterwards (deploy uses it).
    """
    import sys

    block = not address.startswith("ssh://") and "paramiko" not in sys.modules
    if block:
        sys.modules["paramiko"] = None  # type: ignore[assignment]  # makes `import paramiko` fail
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DockerError("the docker Python package is not installed: pip install 'docker>=7'") from exc
    finally:
        if block:
            del sys.modules["paramiko"]
    return docker


def _api_error(action: str, exc: Exception) -> DockerError:
    """Turn an SDK exception into one actionable sentence."""
    import docker.errors

    if isinstance(exc, docker.errors.NotFound):
        return DockerError(f"{action} failed: the image does not exist locally: build or pull it first")
    if isinstance(exc, docker.errors.APIError):
        reason = getattr(exc, "explanation", None) or str(exc)
        return DockerError(f"{action} failed: the daemon said {reason!s}: fix that and retry")
    return DockerError(
        f"{action} failed: lost the connection to the Docker daemon at {_address_or_unknown()} "
        f"({type(exc).__name__}): check that it is running and retry"
    )


def _address_or_unknown() -> str:
    try:
        return daemon_address()
    except DockerError:  # an error message must not fail on a broken context
        return "(unknown: the docker context is broken)"


def _call(action: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except DockerError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to DockerError at this boundary
        raise _api_error(action, exc) from exc


def inspect_image(ref: str) -> dict[str, Any] | None:
    """The ``docker inspect`` JSON of an image, or None when it does not exist locally."""
    import docker.errors

    api = client().api
    try:
        found: dict[str, Any] = api.inspect_image(ref)  # type: ignore[no-untyped-call]  # untyped in types-docker
        return found
    except docker.errors.NotFound:
        return None
    except docker.errors.ImageNotFound:  # pragma: no cover - subclass of NotFound
        return None
    except Exception as exc:  # noqa: BLE001
        raise _api_error(f"docker inspect {ref}", exc) from exc


def image_exists(ref: str) -> bool:
    return inspect_image(ref) is not None


def tag_image(image_id_or_ref: str, repo: str, tag: str) -> None:
    """Tag an existing image as ``repo:tag`` (moves the tag if it exists: guard before)."""
    done = _call(f"docker tag {image_id_or_ref} {repo}:{tag}", client().api.tag, image_id_or_ref, repo, tag)
    if not done:
        raise DockerError(
            f"docker tag {image_id_or_ref} {repo}:{tag} was refused by the daemon: "
            "check the repository name and retry"
        )


def remove_tag(ref: str) -> None:
    """Untag ``ref`` without pruning parents.

    Like ``docker rmi``: when ``ref`` is the image's only tag and no container uses it,
    the daemon deletes the image too.
    """
    _call(f"docker rmi {ref}", client().api.remove_image, ref, noprune=True)


def remove_image(ref: str, *, force: bool = True) -> None:
    """Delete an image (tests and benchmarks clean up with it); absent images are fine."""
    import docker.errors

    try:
        client().api.remove_image(ref, force=force, noprune=False)
    except docker.errors.NotFound:
        return
    except Exception as exc:  # noqa: BLE001
        raise _api_error(f"docker rmi {ref}", exc) from exc


def image_history(ref: str) -> list[dict[str, Any]]:
    """``docker history --no-trunc`` as dicts (newest first): Id, Created, CreatedBy, Comment..."""
    return list(_call(f"docker history {ref}", client().api.history, ref))


def save_stream(ref: str, chunk_size: int = SAVE_CHUNK) -> Iterator[bytes]:
    """``docker save ref`` as a stream of chunks, read straight off the daemon's socket."""
    api = client().api
    response = _call(f"docker save {ref}", _open_save, api, ref)
    try:
        raw = response.raw
        read = raw.read
        while True:
            try:
                chunk = read(chunk_size, decode_content=False)
            except Exception as exc:  # noqa: BLE001
                raise _api_error(f"docker save {ref}", exc) from exc
            if not chunk:
                return
            yield chunk
    finally:
        response.close()


def _open_save(api: Any, ref: str) -> Response:  # Any: the stubs omit these private APIClient methods
    response: Response = api._get(api._url("/images/{0}/get", ref), stream=True)
    api._raise_for_status(response)
    # Saving a large image can pause longer than the client's read timeout.
    sock = api._get_raw_response_socket(response)
    api._disable_socket_timeout(sock)
    return response


def server_version() -> str:
    """The daemon's version string (e.g. ``20.10.24+dfsg1``)."""
    info = _call("docker version", client().version)
    return str(info.get("Version", "unknown"))


def image_folder_files(ref: str, folder: str, max_bytes: int = 1 << 20) -> dict[str, bytes] | None:
    """The regular files directly in ``folder`` of image ``ref`` (name -> content), read from a
    created, never started container; None when the folder does not exist. The container goes
    with the anonymous volumes its image's VOLUME lines made (imagekit's Containerfile has two)."""
    import io
    import tarfile

    import docker.errors

    api = client().api
    container = _call(f"docker create {ref}", api.create_container, ref, command=["true"], entrypoint=[])
    try:
        try:
            stream, _stat = api.get_archive(container["Id"], folder)
        except docker.errors.NotFound:
            return None
        data = b"".join(_call(f"docker cp {ref}:{folder}", lambda: list(stream)))
    finally:
        _call(f"docker rm {container['Id'][:12]}", api.remove_container, container["Id"], v=True, force=True)
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 2:
                handle = tar.extractfile(member)
                files[parts[1]] = handle.read(max_bytes) if handle else b""
    return files


def repository_images(repository: str) -> list[dict[str, Any]]:
    """Every ``repository:tag`` of ``repository`` with its image id and size (bytes)."""
    images = _call(f"docker images {repository}", client().api.images, name=repository)
    result = []
    for image in images or []:
        for ref in image.get("RepoTags") or []:
            if ref.rpartition(":")[0] == repository:
                result.append({"ref": ref, "id": image["Id"], "size": int(image.get("Size") or 0)})
    return result


def container_images() -> dict[str, str]:
    """Image id -> the name of one container (running or not) created from it, for every
    container on the daemon (``docker ps -a``)."""
    containers = _call("docker ps -a", client().api.containers, all=True)
    used: dict[str, str] = {}
    for container in containers or []:
        image_id = str(container.get("ImageID") or "")
        names = container.get("Names") or []
        name = str(names[0]).lstrip("/") if names else str(container.get("Id") or "")[:12]
        state = str(container.get("State") or "")
        if image_id:
            used.setdefault(image_id, f"{name} ({state})" if state else name)
    return used
