"""The images of the other services (MariaDB, Redis) the daemon lacks, named before `up` pulls them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from frappe_imagekit.deploy.send import missing_images
from frappe_imagekit.deploy.steps import missing_image_notes
from frappe_imagekit.errors import DeployError
from frappe_imagekit.process import Completed


class Daemon:
    """Answers one ``docker image inspect`` as docker 20.10 does: the ids found, an error per missing ref."""

    host = "local"

    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], **_kwargs: object) -> Completed:
        self.calls.append(tuple(argv))
        refs = argv[argv.index("--") + 1 :]
        err = "".join(f"Error: No such image: {ref}\n" for ref in refs if ref not in self.present)
        out = "".join("sha256:" + "a" * 64 + "\n" for ref in refs if ref in self.present)
        return Completed(tuple(argv), 1 if err else 0, out, err)


def test_one_inspect_names_every_missing_image():
    daemon = Daemon({"redis:7"})
    assert missing_images(daemon, ["mariadb:10.11", "redis:7"]) == ["mariadb:10.11"]  # type: ignore[arg-type]
    assert daemon.calls == [
        ("docker", "image", "inspect", "--format", "{{.Id}}", "--", "mariadb:10.11", "redis:7")
    ]
    assert missing_images(daemon, []) == [] and len(daemon.calls) == 1  # type: ignore[arg-type]


def test_a_note_per_missing_image_names_its_services():
    daemon = Daemon(set())
    others = {"redis-queue": "redis:7", "db": "mariadb:10.11", "redis-cache": "redis:7", "x": ""}
    assert missing_image_notes(daemon, others) == [  # type: ignore[arg-type]
        "db use mariadb:10.11, which is not on this machine: up pulls it from its registry, which must "
        "be reachable from there (or load the image there first).",
        "redis-cache, redis-queue use redis:7, which is not on this machine: up pulls it from its "
        "registry, which must be reachable from there (or load the image there first).",
    ]
    assert missing_image_notes(Daemon({"mariadb:10.11", "redis:7"}), others) == []  # type: ignore[arg-type]


def test_an_image_that_reads_as_an_option_never_reaches_docker():
    daemon = Daemon(set())
    with pytest.raises(DeployError):
        missing_images(daemon, ["--help"])  # type: ignore[arg-type]
    assert daemon.calls == []
