"""The leak scan over a `docker save` stream built in memory (the daemon itself: integration)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from urllib.parse import quote

import pytest

from frappe_imagekit import dockerapi
from frappe_imagekit.errors import DockerError
from frappe_imagekit.leakscan import scan
from frappe_imagekit.leakscan.needles import Needles, _b64
from frappe_imagekit.leakscan.scan import (
    MAX_FINDINGS,
    LayerHints,
    ScanResult,
    scan_image,
    scan_metadata,
)
from frappe_imagekit.redact import Redactor
from tests.support.leaks import APPS, LONG_DIR, TOKEN, chunked, tar_bytes
from tests.support.leaks import make_redactor as redactor


def layer_one() -> bytes:
    files = {f"usr/lib/app/file{i}.py": f"print({i})\n".encode() * (i % 7) for i in range(300)}
    files["etc/hostname"] = b"frappe\n"
    files["opt/frappe/apps.json"] = APPS.encode()
    files[LONG_DIR + "config.py"] = b"x" * 700 + f"TOKEN = '{TOKEN}'\n".encode()
    files["empty"] = b""
    return tar_bytes(files)


def layer_two() -> bytes:
    files = {
        "opt/frappe/.wh.apps.json": b"",  # the file above is deleted in this layer
        f"tmp/{quote(TOKEN, safe='')}.txt": b"named after the token",
    }
    return gzip.compress(tar_bytes(files, tarfile.GNU_FORMAT))


def saved_image() -> bytes:
    one, two = layer_one(), layer_two()
    diff_ids = [
        "sha256:" + hashlib.sha256(one).hexdigest(),
        "sha256:" + hashlib.sha256(gzip.decompress(two)).hexdigest(),
    ]
    config = {
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created_by": "/bin/sh -c #(nop) COPY file:abc in /opt/frappe/apps.json"},
            {"created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": True},
            {"created_by": "RUN /bin/sh -c rm /opt/frappe/apps.json # buildkit"},
        ],
    }
    manifest = [{"Config": "cfg.json", "Layers": ["l1/layer.tar", "blobs/sha256/l2"]}]
    return tar_bytes(
        {
            "cfg.json": json.dumps(config).encode(),
            "l1/VERSION": b"1.0",
            "l1/layer.tar": one,
            "blobs/sha256/l2": two,
            "manifest.json": json.dumps(manifest).encode(),
            "repositories": b"{}",
        },
        tarfile.USTAR_FORMAT,
    )


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch):
    """dockerapi answering from memory: (inspect attrs, history, saved tar, chunk size)."""
    state = {"attrs": {"Config": {"Env": ["PATH=/bin"], "Labels": {}}}, "history": []}
    state["saved"] = saved_image()
    state["size"] = 4096
    monkeypatch.setattr(dockerapi, "inspect_image", lambda ref: state["attrs"])
    monkeypatch.setattr(dockerapi, "image_history", lambda ref: state["history"])
    monkeypatch.setattr(dockerapi, "save_stream", lambda ref: chunked(state["saved"], state["size"]))
    return state


def assert_redacted(result: ScanResult) -> None:
    text = json.dumps(result.to_dict())
    for form in redactor().forms:
        assert form not in text
    assert TOKEN[:10] not in text and TOKEN[-10:] not in text


@pytest.mark.parametrize("size", [511, 4096, 65536, 10**7])
def test_layers_are_scanned_whatever_the_chunking(fake_daemon, size: int) -> None:
    fake_daemon["size"] = size
    result = scan_image("img:1", redactor())
    assert result.layers == 2
    assert result.bytes_scanned == len(fake_daemon["saved"])
    where = [(f.where, f.location.split(") ", 1)[-1], f.form) for f in result.findings]
    assert where == [
        ("layer", "/opt/frappe/apps.json", "raw"),
        ("layer", "/" + LONG_DIR + "config.py", "raw"),
        (
            "layer",
            f"/tmp/{quote(TOKEN, safe='')}.txt".replace(quote(TOKEN, safe=""), "***"),
            "url-encoded",
        ),
    ]
    first, second, third = result.findings
    assert first.location.startswith("layer 1/2 (sha256:")
    assert third.location.startswith("layer 2/2 (sha256:")
    assert "the content of /opt/frappe/apps.json" in first.detail
    assert "layer made by: COPY file:abc in /opt/frappe/apps.json" in first.detail
    assert "the name of /tmp/***.txt" in third.detail
    assert "layer made by: RUN /bin/sh -c rm /opt/frappe/apps.json # buildkit" in third.detail
    assert "TOKEN = '***'" in second.detail
    assert not result.clean and result.to_dict()["status"] == "leak"
    assert_redacted(result)


def test_a_clean_image(fake_daemon) -> None:
    result = scan_image("img:1", Redactor(["an-unrelated-secret-value-123"]))
    assert result.clean and result.findings == []
    assert result.to_dict() == {
        "status": "clean",
        "findings": [],
        "seconds": round(result.seconds, 3),
        "bytes_scanned": len(fake_daemon["saved"]),
        "layers": 2,
        "more_findings": 0,
    }


def test_many_hits_are_capped_and_counted(fake_daemon) -> None:
    files = {f"copy{i}.txt": TOKEN.encode() for i in range(MAX_FINDINGS + 30)}
    fake_daemon["saved"] = tar_bytes({"x/layer.tar": tar_bytes(files)})
    result = scan_image("img:1", redactor())
    assert len(result.findings) == MAX_FINDINGS
    assert result.more_findings == 30
    assert result.findings[0].location == "x/layer.tar /copy0.txt"  # no manifest: member name


def test_metadata_findings(fake_daemon) -> None:
    b64 = _b64(APPS)
    fake_daemon["history"] = [
        {"CreatedBy": '/bin/sh -c #(nop)  CMD ["sh"]', "Comment": ""},
        {"CreatedBy": f"RUN |1 APPS_JSON_BASE64={b64} /bin/sh -c echo hi # buildkit"},
    ]
    fake_daemon["attrs"] = {
        "Config": {
            "Env": ["PATH=/bin", f"GIT_URL=https://{quote(TOKEN, safe='')}@github.com/x"],
            "Labels": {"org.opencontainers.image.title": "erp", "token": TOKEN},
            "Cmd": ["sh", "-c", f"echo {TOKEN}"],
        }
    }
    fake_daemon["saved"] = tar_bytes({"cfg.json": json.dumps({"x": TOKEN}).encode()})
    result = scan_image("img:1", redactor())
    got = [(f.where, f.location, f.form) for f in result.findings]
    assert got == [
        ("history", "history line 2 (docker history --no-trunc, newest first)", "base64"),
        ("env", "GIT_URL", "url-encoded"),
        ("label", "token", "raw"),
        ("config", "Config.Cmd", "raw"),
    ]  # the saved config repeats these, so it is not reported again
    history, env, label, cmd = (f.detail for f in result.findings)
    assert history == (
        "base64 form of a secret in a build step: RUN |1 APPS_JSON_BASE64=*** /bin/sh -c echo hi"
        " # buildkit (an ARG or ENV used by this step is recorded in the image history)"
    )
    assert env == "url-encoded form of a secret in ENV GIT_URL: GIT_URL=https://***@github.com/x"
    assert label == "raw form of a secret in LABEL token: token=***"
    assert cmd == 'raw form of a secret in Config.Cmd: ["sh", "-c", "echo ***"]'
    assert_redacted(result)


def test_a_secret_only_in_the_saved_config_is_reported(fake_daemon) -> None:
    fake_daemon["saved"] = tar_bytes({"cfg.json": json.dumps({"x": TOKEN}).encode()})
    result = scan_image("img:1", redactor())
    assert [(f.where, f.location, f.form) for f in result.findings] == [("config", "cfg.json", "raw")]


def test_missing_image_and_unreadable_layers(fake_daemon, monkeypatch) -> None:
    monkeypatch.setattr(dockerapi, "inspect_image", lambda ref: None)
    with pytest.raises(DockerError, match="cannot scan img:1: the image does not exist"):
        scan_image("img:1", redactor())
    monkeypatch.setattr(dockerapi, "inspect_image", lambda ref: {"Config": {}})
    fake_daemon["saved"] = tar_bytes({"blobs/sha256/z": b"\x28\xb5\x2f\xfd" + b"\0" * 2000})
    with pytest.raises(DockerError, match="zstd-compressed, which imagekit cannot scan"):
        scan_image("img:1", redactor())
    broken = bytearray(saved_image())
    broken[100] ^= 0xFF  # the mode field of the first header: checksum no longer matches
    fake_daemon["saved"] = bytes(broken)
    with pytest.raises(DockerError, match="not a tar archive"):
        scan_image("img:1", redactor())


def test_scan_metadata_without_forms() -> None:
    needles = Needles.from_forms([])
    assert scan_metadata({"Config": {"Env": [f"T={TOKEN}"]}}, [], needles) == []


def test_prefetch_hands_over_chunks_errors_and_closes_the_source() -> None:
    closed = []

    def source(fail: bool):
        try:
            yield b"one"
            yield b"two"
            if fail:
                raise DockerError("lost the daemon")
            yield b"three"
        finally:
            closed.append(fail)

    with scan.prefetch(source(False), depth=1) as chunks:
        assert list(chunks) == [b"one", b"two", b"three"]
    with (
        pytest.raises(DockerError, match="lost the daemon"),
        scan.prefetch(source(True)) as chunks,
    ):
        list(chunks)
    with scan.prefetch(source(False), depth=1) as chunks:
        assert next(chunks) == b"one"  # the consumer stops early: the reader stops too
    assert sorted(closed) == [False, False, True]


def test_oci_layout_of_newer_daemons(fake_daemon) -> None:
    """Docker 25+ saves an OCI layout: blobs/sha256/<id> for configs and layers alike."""
    one = layer_one()
    config = {
        "rootfs": {"diff_ids": ["sha256:" + hashlib.sha256(one).hexdigest()]},
        "history": [{"created_by": "COPY apps.json /opt/frappe/ # buildkit"}],
    }
    manifest = [{"Config": "blobs/sha256/cfg", "Layers": ["blobs/sha256/l1"]}]
    fake_daemon["saved"] = tar_bytes(
        {
            "blobs/sha256/cfg": json.dumps(config).encode(),
            "blobs/sha256/l1": one,
            "index.json": b'{"schemaVersion": 2}',
            "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "manifest.json": json.dumps(manifest).encode(),
        }
    )
    result = scan_image("img:1", redactor())
    assert [f.location for f in result.findings][:1] == [
        f"layer 1/1 ({config['rootfs']['diff_ids'][0][:19]}) /opt/frappe/apps.json"
    ]
    assert "(layer made by: COPY apps.json /opt/frappe/ # buildkit)" in result.findings[0].detail


# ---------------------------------------------------------------- layers known clean


def _diff_ids(saved: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        member = tar.extractfile("cfg.json")
        assert member is not None
        return list(json.load(member)["rootfs"]["diff_ids"])


@pytest.fixture
def small_layers_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "PASS_OVER_MIN", 0)  # the layers here are a few KB


def test_layers_known_clean_are_read_but_not_searched(fake_daemon, small_layers_pass) -> None:
    """Layer one holds the token; known clean (with the size of its tar, as the cache records
    it from the scan before), the scan passes over it (the daemon still sends it) and searches
    layer two only."""
    diff_ids = _diff_ids(fake_daemon["saved"])
    fake_daemon["attrs"]["RootFS"] = {"Layers": diff_ids}
    everything = scan_image("img:1", redactor())
    assert everything.layers_skipped == 0 and len(everything.findings) == 3
    hints = everything.hints
    assert hints.sizes == {diff_ids[0]: len(layer_one()), diff_ids[1]: len(layer_two())}
    assert hints.members == {"l1/layer.tar": diff_ids[0], "blobs/sha256/l2": diff_ids[1]}
    result = scan_image("img:1", redactor(), {diff_ids[0]}, LayerHints(sizes=hints.sizes))
    assert result.layers_skipped == 1 and result.layers == 2
    assert result.bytes_scanned == len(fake_daemon["saved"])
    assert [f.location.split(" ", 2)[:2] for f in result.findings] == [["layer", "2/2"]]
    assert_redacted(result)
    # without hints a classic member (named by a synthetic id) cannot be told: all searched
    assert scan_image("img:1", redactor(), {diff_ids[0]}).layers_skipped == 0


def test_a_member_name_seen_before_is_passed_over_whatever_its_size(fake_daemon) -> None:
    diff_ids = _diff_ids(fake_daemon["saved"])
    fake_daemon["attrs"]["RootFS"] = {"Layers": diff_ids}
    hints = LayerHints(members={"l1/layer.tar": diff_ids[0]})
    result = scan_image("img:1", redactor(), {diff_ids[0]}, hints)
    assert result.layers_skipped == 1 and len(result.findings) == 1


def test_a_layer_passed_over_that_the_manifest_contradicts_is_scanned_again(
    fake_daemon, small_layers_pass
) -> None:
    """Another known clean layer has the size of layer one's tar: layer one is passed over,
    the saved config then says it was not that layer, and the image is scanned again, passing
    over only what the first stream's manifest named clean (nothing here)."""
    diff_ids = _diff_ids(fake_daemon["saved"])
    other = "sha256:" + "0" * 64
    fake_daemon["attrs"]["RootFS"] = {"Layers": [other, *diff_ids]}
    result = scan_image("img:1", redactor(), {other}, LayerHints(sizes={other: len(layer_one())}))
    assert result.layers_skipped == 0 and len(result.findings) == 3


def test_small_layers_are_always_searched(fake_daemon) -> None:
    diff_ids = _diff_ids(fake_daemon["saved"])
    fake_daemon["attrs"]["RootFS"] = {"Layers": diff_ids}
    hints = LayerHints(sizes={diff_ids[0]: len(layer_one())})
    assert len(layer_one()) < scan.PASS_OVER_MIN
    assert scan_image("img:1", redactor(), {diff_ids[0]}, hints).layers_skipped == 0
