"""Canary secrets and in-memory tars for the leak scan's unit tests."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator

from frappe_imagekit.redact import Redactor

TOKEN = "ghp_IkCanary/Tok+en=0123456789abcdefXYZ"  # '/', '+', '=' give a distinct URL form
APPS = json.dumps([{"url": f"https://{TOKEN}@github.com/org/app.git", "branch": "main"}])
LONG_DIR = "home/frappe/frappe-bench/apps/" + "deep/" * 30


def make_redactor() -> Redactor:
    """The token and the apps.json that holds it, as build registers them."""
    redactor = Redactor([TOKEN])
    redactor.add(APPS, whole_document=True)
    return redactor


def tar_bytes(files: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def wrapped(data: bytes, width: int, newline: bytes) -> bytes:
    """``data`` wrapped at ``width`` columns, as base64 tools wrap their output."""
    return newline.join(data[i : i + width] for i in range(0, len(data), width)) + newline
