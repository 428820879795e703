"""The fake bench's `restore` and `new-site` against real frappe 15.55.1 (the lab's transcripts in
tests/fixtures/frappe-v15-lab): the same command, the same answers on stdin, the same output
(stdout and stderr merged, as captured) and exit status. Progress bars redrawn with ``\\r`` are
compared by their last state (real frappe redraws hundreds of times, the fake once).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from frappe_imagekit import process
from tests.support.benchimage.fixtures import bench_image, docker  # noqa: F401

LAB = Path(__file__).resolve().parents[1] / "fixtures" / "frappe-v15-lab"
DUMPS = "sites/lab-dumps/20261207_190051-s1_lab"
SETUP = (  # what the lab's sites folder held: a dump of s1.lab and its files archives
    "mkdir -p sites/lab-dumps sites/s1.lab/public/files sites/s1.lab/private/files"
    " && echo '{}' > sites/s1.lab/site_config.json"
    " && echo note > sites/s1.lab/public/files/lab-public-note.txt"
    f" && printf 'CREATE TABLE `tabLab Asset` (`name` varchar(140));\\n' | gzip > {DUMPS}-database.sql.gz"
    f" && tar -cf {DUMPS}-files.tar -C sites ./s1.lab/public/files"
    f" && tar -cf {DUMPS}-private-files.tar -C sites ./s1.lab/private/files"
)
TABLES = (  # s1.lab's database when 71* were captured: 2 users, 264 doctypes, no deleted documents
    "mkdir -p sites/s1.lab/db"
    ' && printf \'{"db_name": "_5116005a7a161418"}\' > sites/s1.lab/site_config.json'
    " && seq 2 > sites/s1.lab/db/tabUser && seq 264 > sites/s1.lab/db/tabDocType"
    " && : > 'sites/s1.lab/db/tabDeleted Document'"
)
CASES = {  # transcript: (more setup, the lines on stdin)
    "49-new-site-admin-password-once-aborted": ("rm -rf sites/s1.lab", "root\nadmin\n"),
    "50-restore-missing-site": ("", "root\n"),
    "51-new-site-source-sql": ("", "root\nadmin\nadmin\n"),
    "51e-new-site-source-sql-install-app": ("", "root\nadmin\nadmin\n"),
    "52-new-site-source-sql-existing": ("mkdir -p sites/sb.lab", "root\nadmin\nadmin\n"),
    "53-new-site-wrong-root-password": ("echo root > sites/.db_root_password", "wrongroot\nadmin\nadmin\n"),
    "53c-drop-site-half-made": ("mkdir -p sites/sc.lab && touch sites/sc.lab/site_config.json", "root\n"),
    "54-restore-existing-with-files": ("", "root\n"),
    "55-restore-existing-stdin-password": ("", "root\n"),
    "55b-restore-existing-wrong-password": ("echo root > sites/.db_root_password", "wrongroot\n"),
    "71-db-count-user": (TABLES, ""),
    "71b-db-count-doctype": (TABLES, ""),
    "71c-db-count-missing-table": (TABLES, ""),
    "71d-db-count-empty-table": (TABLES, ""),
}
_REDRAWN = re.compile(r"(?:\r?Updating DocTypes for \S+\s*: \[[= ]*\] \d+%)+")


def last_redraw(text: str) -> str:
    return _REDRAWN.sub(lambda m: "\r" + m.group(0).rsplit("\r", 1)[-1].lstrip("\r"), text)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_fake_answers_as_real_frappe(name: str, bench_image: str) -> None:  # noqa: F811
    meta = json.loads((LAB / f"{name}.json").read_text())
    real = (LAB / f"{name}.txt").read_bytes().decode()  # \r kept
    setup, stdin = CASES[name]
    argv = shlex.split(meta["command"])
    assert argv[0] == "bench"
    script = f'{SETUP} {"&& " + setup if setup else ""} && exec "$@" 2>&1'
    done = docker_stdin(bench_image, ["sh", "-c", script, "sh", *argv], stdin)
    assert (done.returncode, last_redraw(done.stdout)) == (meta["exit_code"], last_redraw(real))


def docker_stdin(image: str, argv: list[str], stdin: str) -> process.Completed:
    return process.run(["docker", "run", "--rm", "-i", image, *argv], input_bytes=stdin.encode(), timeout=120)
