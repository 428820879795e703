"""The streamed tar reader: TarIndex names the member at any offset, whatever the chunking."""

from __future__ import annotations

import tarfile

import pytest

from frappe_imagekit.leakscan.tar import TarIndex
from tests.support.leaks import LONG_DIR, chunked, tar_bytes


@pytest.mark.parametrize("size", [100, 512, 513, 4096])
def test_tar_index_names_every_member(size: int) -> None:
    files = {
        "a.txt": b"A" * 10,
        LONG_DIR + "long.txt": b"L" * 1000,
        "empty": b"",
        "b/c.txt": b"C" * 513,
        ".dockerenv": b"D" * 20,
        "./home/.bashrc": b"B" * 30,
    }
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        data = tar_bytes(files, fmt)
        index = TarIndex(keep=10**9)
        for chunk in chunked(data, size):
            index.feed(chunk)
        for name, content in files.items():
            if not content:
                continue
            offset = data.index(content)
            path = "/" + name.removeprefix("./")
            assert index.name_at(offset) == (path, False), (fmt, name)
            assert index.name_at(offset + len(content) - 1) == (path, False)
        header = data.index(b"b/c.txt")
        assert index.name_at(header) == ("/b/c.txt", True)
