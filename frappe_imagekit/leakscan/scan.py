"""Scan a finished image: history, config and every layer of its ``docker save`` stream.

Where: the history ``created_by`` lines, ``Config.Env``, ``Config.Labels`` (and the rest of the
image config), and every byte of every layer, streamed from the daemon (``docker save``) and
never unpacked to disk. Each layer is scanned on its own, so a file written in one layer and
deleted in the next is still found. Every finding passes the redactor on its way out.

Layers already scanned clean for the same secrets (``cache``) are passed over: ``docker save``
still sends them (the daemon has no way to send one layer), but their bytes are only counted,
never searched. Which layer a member of the stream is comes from its name (``blobs/sha256/<id>``
of Docker 25+) or its place (the classic layout writes the layers in order); the manifest at
the end of the stream confirms every layer passed over, and when it does not, the image is
scanned again in full.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
import zlib
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from frappe_imagekit import dockerapi
from frappe_imagekit.errors import DockerError
from frappe_imagekit.leakscan.needles import Needles
from frappe_imagekit.leakscan.stream import Hit, StreamSearch, printable
from frappe_imagekit.leakscan.tar import Pull, TarIndex, iter_tar
from frappe_imagekit.redact import MASK, Redactor

PREFETCH_CHUNKS = 8  # up to 32 MB read ahead while the previous chunks are scanned
PASS_OVER_MIN = 1 << 20  # a layer tar smaller than this is searched even when known clean
MAX_FINDINGS = 50  # a token copied into a thousand files needs the first few places, not all
_MAX_JSON = 16 * 1024 * 1024  # an image config is a few KB; never hold a big blob in memory
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


@dataclass
class Finding:
    """One place a secret was found. ``detail`` is redacted: it never holds the secret."""

    where: str  # "history" | "env" | "label" | "config" | "layer"
    location: str  # history line, env/label key, or "layer N/M (id) /path"
    form: str  # "raw" | "base64" | "url-encoded"
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class LayerHints:
    """How to tell which layer a member of the classic ``docker save`` stream is before reading
    it (it is named by a synthetic v1 id, and the layers come in the order of those ids): the
    name it had in an earlier scan (the id is made of the layer chain, so a layer keeps its name
    while the layers under it stay the same), else the size of its tar."""

    members: Mapping[str, str] = field(default_factory=dict)  # member name -> diff_id
    sizes: Mapping[str, int] = field(default_factory=dict)  # diff_id -> size of its tar


@dataclass
class ScanResult:
    findings: list[Finding]
    seconds: float
    bytes_scanned: int
    layers: int = 0
    more_findings: int = 0  # hits beyond MAX_FINDINGS, counted but not listed
    layers_skipped: int = 0  # layers known clean: read off the stream, not searched
    hints: LayerHints = field(default_factory=LayerHints)  # of this image's layers, for the next scan

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "clean" if self.clean else "leak",
            "findings": [f.to_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
            "bytes_scanned": self.bytes_scanned,
            "layers": self.layers,
            "more_findings": self.more_findings,
        }


@contextlib.contextmanager
def prefetch(chunks: Iterator[bytes], depth: int = PREFETCH_CHUNKS) -> Generator[Iterator[bytes]]:
    """Read ``chunks`` in a thread so the daemon keeps streaming while we scan.

    Socket reads release the GIL, so reading overlaps scanning; without this the daemon
    stalls whenever a chunk is being searched (measured: +45% over ``docker save``).
    """
    ready: queue.Queue[tuple[bytes | None, BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        ready.put((chunk, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            ready.put((None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            ready.put((None, exc))
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()

    def consume() -> Iterator[bytes]:
        while True:
            chunk, error = ready.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk

    thread = threading.Thread(target=pump, name="imagekit-save-stream", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        # Unblock the reader; a daemon that stalls mid-stream must not hang us forever (the
        # thread is a daemon thread and ends with the process).
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)


@dataclass
class _LayerHits:
    member: str  # name in the saved tar
    hits: list[tuple[Hit, str, bool]] = field(default_factory=list)  # hit, path, in name


@dataclass(frozen=True)
class KnownClean:
    """The image's layers (RootFS.Layers), those already scanned clean, and the hints."""

    diff_ids: tuple[str, ...]
    clean: frozenset[str]
    hints: LayerHints = field(default_factory=LayerHints)

    def may_pass(self, member: str, size: int) -> bool:
        """True when the layer member ``member`` of ``size`` bytes is a layer known clean."""
        if member.startswith("blobs/sha256/"):  # Docker 25+: named by its digest
            named = "sha256:" + member.rsplit("/", 1)[-1]
            if named in self.diff_ids:
                return named in self.clean
        remembered = self.hints.members.get(member)
        if remembered in self.diff_ids:
            return remembered in self.clean
        if size < PASS_OVER_MIN:  # small layers often share a size; searching them costs nothing
            return False
        return any(d in self.clean and self.hints.sizes.get(d) == size for d in self.diff_ids)


@dataclass
class _SaveScan:
    needles: Needles
    known: KnownClean | None = None
    passed: list[str] = field(default_factory=list)  # layer members read and not searched
    member_sizes: dict[str, int] = field(default_factory=dict)
    layers: list[_LayerHits] = field(default_factory=list)
    flat: list[tuple[str, Hit]] = field(default_factory=list)  # non-layer members
    manifest: list[dict[str, Any]] = field(default_factory=list)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    bytes_scanned: int = 0
    layer_count: int = 0
    hit_count: int = 0


def scan_image(
    ref: str, redactor: Redactor, clean: Iterable[str] = (), hints: LayerHints | None = None
) -> ScanResult:
    """Scan image ``ref`` for every form ``redactor`` knows; the result says where each is.
    Layers whose diff_id is in ``clean`` (scanned clean before for these forms; ``hints``: how
    to tell them in the stream) are not searched."""
    started = time.perf_counter()
    needles = Needles.from_forms(redactor.forms)
    attrs = dockerapi.inspect_image(ref)
    if attrs is None:
        raise DockerError(f"cannot scan {ref}: the image does not exist locally: build it first")
    findings = scan_metadata(attrs, dockerapi.image_history(ref), needles)
    if not needles.atoms:
        return ScanResult(findings, time.perf_counter() - started, 0)
    layers = tuple(str(d) for d in ((attrs.get("RootFS") or {}).get("Layers") or []))
    known = KnownClean(layers, frozenset(clean), hints or LayerHints()) if clean else None
    state = _scan_stream(ref, needles, known)
    if state.passed and not passed_layers_confirmed(state):
        # a layer passed over was another one (two of the same size): again, now by exact names
        exact = KnownClean(layers, frozenset(clean), LayerHints(members=dict(_stream_layers(state) or [])))
        state = _scan_stream(ref, needles, exact)
        if state.passed and not passed_layers_confirmed(state):
            state = _scan_stream(ref, needles, None)  # the stream was not what inspect said
    findings += _layer_findings(state, bool(findings))
    total = len(findings) + state.hit_count - sum(len(lh.hits) for lh in state.layers)
    shown = findings[:MAX_FINDINGS]
    return ScanResult(
        findings=[_final_gate(f, redactor) for f in shown],
        seconds=time.perf_counter() - started,
        bytes_scanned=state.bytes_scanned,
        layers=state.layer_count,
        more_findings=max(0, total - len(shown)),
        layers_skipped=len(state.passed),
        hints=layer_hints(state),
    )


def _scan_stream(ref: str, needles: Needles, known: KnownClean | None) -> _SaveScan:
    with prefetch(dockerapi.save_stream(ref)) as chunks:
        return scan_saved_image(chunks, needles, known)


def _stream_layers(state: _SaveScan) -> list[tuple[str, str]] | None:
    """(member, diff_id) of every layer, from the stream's own manifest and config."""
    if not state.manifest:
        return None
    entry = state.manifest[0]
    members = [str(m) for m in entry.get("Layers") or []]
    config = state.configs.get(str(entry.get("Config", "")), {})
    diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
    return list(zip(members, diff_ids, strict=True)) if len(diff_ids) == len(members) else None


def passed_layers_confirmed(state: _SaveScan) -> bool:
    """Every layer passed over is, by the stream's own manifest and config, a clean one."""
    placed = _stream_layers(state)
    if placed is None or state.known is None:
        return False
    clean = state.known.clean
    return all(diff_id in clean for member, diff_id in placed if member in state.passed)


def layer_hints(state: _SaveScan) -> LayerHints:
    """Each layer's member name and tar size in this stream (for ``KnownClean`` next time)."""
    placed = _stream_layers(state) or []
    sizes = {d: state.member_sizes[m] for m, d in placed if m in state.member_sizes}
    return LayerHints(members=dict(placed), sizes=sizes)


def _final_gate(finding: Finding, redactor: Redactor) -> Finding:
    """Belt and braces: nothing leaves this module without passing the redactor."""
    return Finding(
        finding.where,
        redactor.redact(finding.location),
        finding.form,
        redactor.redact(finding.detail),
    )


def scan_metadata(attrs: Mapping[str, Any], history: list[dict[str, Any]], needles: Needles) -> list[Finding]:
    """Findings in history lines, Config.Env, Config.Labels and the rest of the image config."""
    findings: list[Finding] = []
    for number, step in enumerate(history, start=1):
        for key in ("CreatedBy", "Comment"):
            text = step.get(key) or ""
            found = needles.search_text(text)
            if found:
                findings.append(
                    Finding(
                        "history",
                        f"history line {number} (docker history --no-trunc, newest first)",
                        found[0],
                        f"{found[0]} form of a secret in a build step: "
                        f"{_text_excerpt(text, needles)} "
                        "(an ARG or ENV used by this step is recorded in the image history)",
                    )
                )
    config = attrs.get("Config") or {}
    for entry in config.get("Env") or []:
        key, _, value = entry.partition("=")
        found = needles.search_text(entry)
        if found:
            findings.append(
                Finding(
                    "env",
                    key,
                    found[0],
                    f"{found[0]} form of a secret in ENV {key}: {_text_excerpt(entry, needles)}",
                )
            )
    for key, value in (config.get("Labels") or {}).items():
        entry = f"{key}={value}"
        found = needles.search_text(entry)
        if found:
            findings.append(
                Finding(
                    "label",
                    key,
                    found[0],
                    f"{found[0]} form of a secret in LABEL {key}: {_text_excerpt(entry, needles)}",
                )
            )
    findings += _config_findings(attrs, needles)
    return findings


def _config_findings(attrs: Mapping[str, Any], needles: Needles) -> list[Finding]:
    """Other config fields (Cmd, Entrypoint, WorkingDir, ContainerConfig...)."""
    found_in: list[Finding] = []
    for section in ("Config", "ContainerConfig"):
        body = dict(attrs.get(section) or {})
        if section == "Config":
            body.pop("Env", None)
            body.pop("Labels", None)
        for key, value in body.items():
            if section == "ContainerConfig" and key in ("Env", "Labels", "Cmd"):
                continue  # Env/Labels as above; Cmd is the last history line
            text = json.dumps(value, ensure_ascii=False)
            found = needles.search_text(text)
            if found:
                found_in.append(
                    Finding(
                        "config",
                        f"{section}.{key}",
                        found[0],
                        f"{found[0]} form of a secret in {section}.{key}: {_text_excerpt(text, needles)}",
                    )
                )
    return found_in


def _text_excerpt(text: str, needles: Needles, context: int = 60) -> str:
    """``text`` masked whole, then shortened around the first mask (a complete string can
    be masked before it is cut, so no cut can expose part of a form)."""
    masked = needles.mask(text)
    at = max(masked.find(MASK), 0)
    start, end = max(0, at - context), at + len(MASK) + context
    head = "..." if start > 0 else ""
    tail = "..." if end < len(masked) else ""
    return head + printable(masked[start:end].encode()) + tail


def scan_saved_image(chunks: Iterator[bytes], needles: Needles, known: KnownClean | None = None) -> _SaveScan:
    """Scan a ``docker save`` stream: every member, layer tars (plain or gzip) as layers (those
    ``known`` clean are read and not searched)."""
    state = _SaveScan(needles, known)
    pull = Pull(iter(chunks))
    for name, is_file, size, body in iter_tar(pull):
        if is_file:
            _scan_member(state, name, size, body)
    pull.drain()
    state.bytes_scanned = pull.total
    return state


def _scan_member(state: _SaveScan, name: str, size: int, body: Iterator[bytes]) -> None:
    first = b""
    for piece in body:  # enough bytes to tell a tar (magic at 257) from gzip or JSON
        first = first + piece if first else piece
        if len(first) >= 1024:
            break
    kind = _content_kind(first)
    if kind == "zstd":
        raise DockerError(
            f"layer {name} of the saved image is zstd-compressed, which imagekit cannot scan: "
            "export the image uncompressed (classic image store) and retry"
        )
    if kind in ("gzip", "tar"):
        state.member_sizes[name] = size
    if kind in ("gzip", "tar") and _pass_over(state, name, size):
        for _piece in body:  # read off the stream, never searched
            pass
    elif kind == "gzip":
        _scan_layer(state, name, _gunzip(first, body))
    elif kind == "tar":
        _scan_layer(state, name, _prepend(first, body))
    else:
        _scan_flat(state, name, _prepend(first, body))


def _pass_over(state: _SaveScan, name: str, size: int) -> bool:
    """True (and counted) when this layer member is one already scanned clean."""
    if state.known is None or not state.known.may_pass(name, size):
        return False
    state.passed.append(name)
    state.layers.append(_LayerHits(name))
    state.layer_count += 1
    return True


def _content_kind(head: bytes) -> str:
    if head.startswith(_GZIP):
        return "gzip"
    if head.startswith(_ZSTD):
        return "zstd"
    if head[257:262] == b"ustar" or (len(head) >= 1024 and head[:1024].count(0) == 1024):
        return "tar"
    return "other"


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _gunzip(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    inflate = zlib.decompressobj(wbits=31)
    for chunk in _prepend(first, rest):
        out = inflate.decompress(chunk)
        while inflate.unused_data:  # concatenated gzip members
            tail = inflate.unused_data
            out += inflate.flush()
            inflate = zlib.decompressobj(wbits=31)
            out += inflate.decompress(tail)
        if out:
            yield out
    out = inflate.flush()
    if out:
        yield out


def _scan_layer(state: _SaveScan, name: str, chunks: Iterable[bytes]) -> None:
    search = StreamSearch(state.needles)
    index = TarIndex(search.keep)
    layer = _LayerHits(name)
    state.layers.append(layer)
    state.layer_count += 1
    for chunk in chunks:
        index.feed(chunk)
        for hit in search.feed(chunk):
            state.hit_count += 1
            if len(layer.hits) < MAX_FINDINGS:
                path, in_name = index.name_at(hit.offset)
                layer.hits.append((hit, path, in_name))


def _scan_flat(state: _SaveScan, name: str, chunks: Iterable[bytes]) -> None:
    """A member that is not a layer: JSON documents (manifest, image config) are kept to
    name the layers afterwards (``<id>.json`` in the classic layout, ``blobs/sha256/<id>``
    in the OCI one)."""
    search = StreamSearch(state.needles)
    body: bytearray | None = None
    for chunk in chunks:
        if body is None and search.pos == 0 and chunk.lstrip()[:1] in (b"{", b"["):
            body = bytearray()
        if body is not None and len(body) < _MAX_JSON:
            body += chunk
        state.flat.extend((name, hit) for hit in search.feed(chunk))
    if body is not None and len(body) < _MAX_JSON:
        _remember_json(state, name, bytes(body))


def _remember_json(state: _SaveScan, name: str, body: bytes) -> None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return
    if name == "manifest.json" and isinstance(parsed, list):
        state.manifest = parsed
    elif isinstance(parsed, dict) and "rootfs" in parsed:
        state.configs[name] = parsed


def _layer_findings(state: _SaveScan, metadata_hit: bool) -> list[Finding]:
    labels = _layer_labels(state)
    findings = []
    for layer in state.layers:
        label, step = labels.get(layer.member, (layer.member, ""))
        made_by = f" (layer made by: {step})" if step else ""
        for hit, path, in_name in layer.hits:
            what = "the name of" if in_name else "the content of"
            findings.append(
                Finding(
                    "layer",
                    f"{label} {path}",
                    hit.kind,
                    f"{hit.kind} form of a secret in {what} {path}{made_by}: {hit.excerpt}",
                )
            )
    if not metadata_hit:  # the image config repeats history/env/labels: report it only alone
        for name, hit in state.flat:
            findings.append(
                Finding(
                    "config",
                    name,
                    hit.kind,
                    f"{hit.kind} form of a secret in {name} of the saved image: {hit.excerpt}",
                )
            )
    return findings


def _layer_labels(state: _SaveScan) -> dict[str, tuple[str, str]]:
    """Saved-tar member name -> ("layer N/M (sha256:short)", the step that made it)."""
    if not state.manifest:
        return {}
    entry = state.manifest[0]
    members = entry.get("Layers") or []
    config = state.configs.get(entry.get("Config", ""), {})
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    steps = [h for h in config.get("history") or [] if not h.get("empty_layer")]
    labels = {}
    for number, member in enumerate(members, start=1):
        diff = diff_ids[number - 1] if number - 1 < len(diff_ids) else member
        step = ""
        if len(steps) == len(members):
            # Mask before shortening: a cut could leave part of a form unmasked.
            step = _short_step(state.needles.mask(steps[number - 1].get("created_by") or ""))
        labels[member] = (f"layer {number}/{len(members)} ({diff[:19]})", step)
    return labels


def _short_step(step: str) -> str:
    step = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", step.strip()).strip()
    return step if len(step) <= 100 else step[:97] + "..."
