"""build/layers.py and the helper's mark/layer/apply, run on this machine's GNU tools (those of
Debian's python:X-slim image) with the bench and list folders moved under tmp_path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from frappe_imagekit import process
from frappe_imagekit.build import benchfile, layers
from frappe_imagekit.build.containerfile import default_containerfile


class Steps:
    """A bench in ``live``; after each step its stage (the bench and the lists) is copied to
    ``stages/<name>`` at the same absolute paths, as BuildKit keeps each step's stage."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bench = tmp / "live" / "frappe-bench"
        self.lists = tmp / "live" / "layers"
        text = benchfile.helper_script()
        text = text.replace(f"bench={benchfile.BENCH}", f"bench={self.bench}")
        self.helper = tmp / "imagekit-git"
        self.helper.write_text(text.replace(f"layers={benchfile.LAYERS}", f"layers={self.lists}"))

    def sh(self, *args: str) -> str:
        done = process.run(["sh", str(self.helper), *args], timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def step(self, name: str, work: str) -> str:
        """mark, ``work`` (shell, in the bench's parent), layer; then keep the stage."""
        self.sh("mark", name)
        self.bench.parent.mkdir(parents=True, exist_ok=True)
        done = process.run(["sh", "-c", work], cwd=str(self.bench.parent), timeout=60)
        assert done.returncode == 0, done.stderr
        said = self.sh("layer", name)
        stage = self.root(name)
        for path in (self.bench, self.lists):
            shutil.copytree(path, f"{stage}{path}", symlinks=True)
        return said

    def root(self, name: str) -> Path:
        return self.tmp / "stages" / name

    def apply_all(self, names: list[str], dest: Path) -> None:
        """The final stage: each step's layer in order, into ``dest``, read from the stage's
        bench copied to the path ``dest`` has there (the stage's bench is at the same path)."""
        script = self.tmp / "apply.sh"
        script.write_text(self.helper.read_text().replace(f"bench={self.bench}", f"bench={dest}"))
        for name in names:
            shutil.copytree(f"{self.root(name)}{self.bench}", f"{self.root(name)}{dest}", symlinks=True)
            done = process.run(["sh", str(script), "apply", name, str(self.root(name))], timeout=60)
            assert done.returncode == 0, done.stderr


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: its type and content (files) or target (links)."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                entries[rel] = "link " + os.readlink(path)
            elif path.is_dir():
                entries[rel] = "dir"
            else:
                entries[rel] = "file " + path.read_text()
    return entries


FRAPPE = """
mkdir -p frappe-bench/apps/frappe/frappe/public frappe-bench/env/lib frappe-bench/sites/assets
echo 'frappe' > frappe-bench/apps/frappe/setup.py
echo 'old dependency' > frappe-bench/env/lib/dep-1.0.py
mkdir frappe-bench/env/lib/was-a-folder && echo x > frappe-bench/env/lib/was-a-folder/file
ln -s "$PWD/frappe-bench/apps/frappe/frappe/public" frappe-bench/sites/assets/frappe
echo '{"desk.js": 1}' > frappe-bench/sites/assets/assets.json
echo frappe > frappe-bench/sites/apps.txt
"""
# an app's step: its own files, a dependency upgraded (old one removed), a folder turned into a
# file, a file whose mtime is set back (as yarn copies from its cache), shared files rewritten
APP = """
cd frappe-bench
mkdir -p apps/shop/shop/public/dist && echo 'shop' > apps/shop/shop/public/dist/shop.js
rm env/lib/dep-1.0.py && echo 'new dependency' > env/lib/dep-2.0.py
rm -r env/lib/was-a-folder && echo 'now a file' > env/lib/was-a-folder
mkdir -p apps/shop/node_modules/left-pad && echo pad > apps/shop/node_modules/left-pad/index.js
touch -d 2001-01-01 apps/shop/node_modules/left-pad/index.js
ln -s "$PWD/apps/shop/shop/public" sites/assets/shop
echo '{"desk.js": 1, "shop.js": 2}' > sites/assets/assets.json
echo shop >> sites/apps.txt
"""


def test_the_layers_rebuild_the_bench_with_the_assets_moved_out_of_sites(tmp_path: Path) -> None:
    steps = Steps(tmp_path)
    assert "the layer of frappe:" in steps.step("frappe", FRAPPE)
    said = steps.step("shop", APP)
    changed = (steps.lists / "shop.changed").read_bytes().split(b"\0")
    deleted = (steps.lists / "shop.deleted").read_bytes().split(b"\0")
    assert b"./apps/setup.py" not in changed and b"./apps/frappe/setup.py" not in changed
    assert b"./apps/shop/node_modules/left-pad/index.js" in changed  # an old mtime, a new ctime
    assert sorted(d for d in deleted if d) == [b"./env/lib/dep-1.0.py", b"./env/lib/was-a-folder",
                                              b"./env/lib/was-a-folder/file"]  # fmt: skip
    assert "3 removed" in said
    dest = tmp_path / "final" / "frappe-bench"
    steps.apply_all(["frappe", "shop"], dest)
    expected = tree(steps.bench)
    expected = {k.replace("sites/assets", "assets", 1) if k.startswith("sites/assets") else k: v
                for k, v in expected.items()}  # fmt: skip
    assert tree(dest) == expected
    assert (
        not (dest / "sites" / "assets").exists()
        and (dest / "assets" / "assets.json").read_text().count("js") == 2
    )


def test_apply_names_a_step_without_lists(tmp_path: Path) -> None:
    steps = Steps(tmp_path)
    done = process.run(["sh", str(steps.helper), "apply", "ghost", str(tmp_path)], timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == f"imagekit: the step of ghost left no layer lists in {steps.lists}"


def test_final_stage_refuses_a_stage_without_the_bench_copy() -> None:
    template = benchfile.split_template(default_containerfile().read_text())
    with pytest.raises(ValueError, match="lost its bench COPY line"):
        layers.final_stage(["frappe"], template.tail.replace(layers.COPY_LINE, ""), benchfile.HELPER)
