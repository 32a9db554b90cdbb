"""The package folder contract, as the shipper reads it.

A finished package is a folder ``<spool>/<package_id>/`` (the packager writes it under
a temporary name and renames it when complete, so a folder with a plain name is
whole). It holds ``manifest.json``, ``SHA256SUMS`` (``sha256sum`` format) and the files
they list. The manifest says which files are metadata and which are dumps::

    {"files": [{"name": "errorlog.txt", "size": 1234, "sha256": "…", "kind": "metadata"}, …]}

:func:`files_from_manifest` is the one place that knows the manifest's shape: if the
packager's manifest changes, only it changes. ``manifest.json`` and ``SHA256SUMS``
themselves are shipped too, as metadata.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from monitor.errors import InputError

__all__ = [
    "MANIFEST",
    "SUMS",
    "Package",
    "PackageFile",
    "dump_sources",
    "file_sha256",
    "files_from_manifest",
    "finished_packages",
    "read_package",
]

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
Kind = Literal["metadata", "dump"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HEX = re.compile(r"[0-9a-f]{64}")
# Names the packager (or an editor, or rsync) uses while a folder is not finished.
_UNFINISHED = (".tmp", ".partial", ".part", ".new", ".incomplete")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PackageFile:
    """One file of a package: ``name`` relative to the package folder ('/'-separated),
    ``size`` in bytes, ``sha256`` (lowercase hex) and its ``kind``."""

    name: str
    size: int
    sha256: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Package:
    """A finished package: its id (the folder name), folder and files, metadata first."""

    package_id: str
    path: Path
    files: tuple[PackageFile, ...]


def file_sha256(path: Path) -> tuple[int, str]:
    """``(size, sha256 hex)`` of the file at ``path``, read in 1 MiB pieces. Raises OSError."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _safe_name(name: object, where: str) -> str:
    """``name`` if it is a plain relative path inside the package, else InputError."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise InputError(where, f"file name {name!r} is not a relative path")
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise InputError(where, f"file name {name!r} leaves the package folder")
    return name


def files_from_manifest(doc: Mapping[str, Any], where: str) -> list[PackageFile]:
    """The files a manifest lists (THE adapter to the packager's manifest shape).

    >>> doc = {"files": [{"name": "core.zst", "size": 1, "sha256": "0" * 64, "kind": "dump"}]}
    >>> [(f.name, f.kind) for f in files_from_manifest(doc, "manifest.json")]
    [('core.zst', 'dump')]

    Raises InputError naming ``where`` when the shape is not the one agreed.
    """
    entries = doc.get("files")
    if not isinstance(entries, list):
        raise InputError(where, 'no "files" list in the manifest')
    out: list[PackageFile] = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise InputError(where, f"files[{i}] is not an object")
        kind, size, digest = e.get("kind"), e.get("size"), str(e.get("sha256", "")).lower()
        if kind not in ("metadata", "dump"):
            raise InputError(where, f'files[{i}].kind is {kind!r}, not "metadata" or "dump"')
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InputError(where, f"files[{i}].size is {size!r}, not a byte count")
        if not _HEX.fullmatch(digest):
            raise InputError(where, f"files[{i}].sha256 is not 64 hex digits")
        out.append(PackageFile(_safe_name(e.get("name"), where), size, digest, kind))
    return out


def dump_sources(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """SHA-256s of the original dump files a manifest's package was made from: each dump's
    ``recorded_sha256`` (the dump record's identity) and ``original_sha256`` (as read for
    the package), without repeats. What retention may now treat as shipped. Tolerant: a
    manifest without them gives ``()``.

    >>> dump_sources({"dumps": [{"original_sha256": "AB" * 32, "recorded_sha256": "ab" * 32}, {}]})[0][:4]
    'abab'
    """
    out: list[str] = []
    for d in doc.get("dumps") or ():
        if isinstance(d, Mapping):
            for key in ("recorded_sha256", "original_sha256"):
                digest = d.get(key)
                if isinstance(digest, str) and _HEX.fullmatch(digest.lower()) and digest.lower() not in out:
                    out.append(digest.lower())
    return tuple(out)


def parse_sums(text: str, where: str) -> dict[str, str]:
    """``name -> sha256`` from ``sha256sum`` output (text or ``*binary`` mode).

    >>> sums = parse_sums(("ab" * 32) + "  dump.zst\\n" + ("CD" * 32) + " *notes.txt\\n", "SUMS")
    >>> sorted(sums), sums["notes.txt"][:4]
    (['dump.zst', 'notes.txt'], 'cdcd')
    """
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line)
        if m is None:
            raise InputError(where, f"line {n} is not sha256sum output")
        sums[_safe_name(m.group(2), where)] = m.group(1).lower()
    return sums


def read_package(path: Path) -> Package:
    """The package in folder ``path``, checked: every file the manifest lists is in
    SHA256SUMS with the same checksum and exists with the listed size.

    Only sizes are checked here (cheap); each file's checksum is checked while it is
    sent. Raises InputError when the folder is not a valid package.
    """
    path = Path(path)
    if not _ID.fullmatch(path.name):
        raise InputError(str(path), "the folder name is not a package id")
    try:
        doc = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        sums = parse_sums((path / SUMS).read_text(encoding="utf-8"), str(path / SUMS))
    except FileNotFoundError as exc:
        raise InputError(str(path), f"no {Path(str(exc.filename)).name}: not a finished package") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"unreadable package: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(str(path / MANIFEST), "not a JSON object")
    listed = files_from_manifest(doc, str(path / MANIFEST))
    files: dict[str, PackageFile] = {}
    for f in listed:
        if sums.get(f.name) != f.sha256:
            raise InputError(str(path), f"{f.name}: the manifest and SHA256SUMS disagree")
        files[f.name] = f
    # Files in SHA256SUMS the manifest does not list, and the two lists themselves: metadata.
    for name in [*sums, MANIFEST, SUMS]:
        if name in files:
            continue
        try:
            size, digest = file_sha256(path / name)
        except OSError as exc:
            raise InputError(str(path / name), f"listed but unreadable: {exc.strerror or exc}") from None
        if name in sums and sums[name] != digest:
            raise InputError(str(path / name), "does not match its SHA256SUMS line")
        files[name] = PackageFile(name, size, digest, "metadata")
    for f in files.values():
        try:
            actual = (path / f.name).stat().st_size
        except OSError as exc:
            raise InputError(str(path / f.name), f"missing: {exc.strerror or exc}") from None
        if actual != f.size:
            raise InputError(str(path / f.name), f"is {actual} bytes, the manifest says {f.size}")
    ordered = sorted(
        files.values(), key=lambda f: (f.kind != "metadata", f.size if f.kind == "dump" else 0, f.name)
    )
    return Package(path.name, path, tuple(ordered))


def finished_packages(spool: Path) -> Iterator[Path]:
    """Folders in ``spool`` that look finished (a plain name, both lists present), by name.

    A missing spool yields nothing. Folders still being written (hidden or with a
    temporary suffix) are skipped.
    """
    try:
        entries = sorted(spool.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name.endswith(_UNFINISHED) or not _ID.fullmatch(name):
            continue
        if entry.is_dir() and (entry / MANIFEST).is_file() and (entry / SUMS).is_file():
            yield entry
