"""The vendor package: one folder per crash with everything a vendor's engineer asks for.

:func:`build_package` gathers the crash record, the errorlog around it and since the
boot before it, the ASE build, host and platform, the flight recorder's frozen activity,
the server's configuration, dump conditions, feature flags and change ledger (each when
known), and the crash's dumps, compressed (zstd, multi-threaded, streaming, constant
memory) and hashed; sealed with age when recipients are configured. Everything but the
dumps is redacted (:mod:`monitor.redact`) and ``redaction.json`` says what was removed.
``manifest.json`` (schema in :mod:`monitor.package_manifest`), ``README.txt`` and
``SHA256SUMS`` (``sha256sum -c``) complete it.

The package is written under a hidden ``.partial`` name and renamed when whole (see
:mod:`monitor.package_fs`); a full disk is checked before starting and handled mid-way:
the partial output is removed, the dumps are never touched, and :class:`NoSpaceError`
names the folder and the bytes needed. Running it again once there is space succeeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import monitor
from monitor.config_package import PackageConfig, package_config_of, parse_recipient, vendor_of
from monitor.package_content import (
    VERBATIM_KEYS,
    Collected,
    FileEntry,
    ase_json,
    collect,
    crash_json,
    write_metadata,
)
from monitor.package_dumps import DumpRef, find_dumps, pinned
from monitor.package_fs import (
    SUMS,
    NoSpaceError,
    PackageError,
    PartialDir,
    add_tree,
    clean_stale,
    free_bytes,
    fsync_dir,
    is_no_space,
    private_dir,
    sums_text,
    write_private,
)
from monitor.package_host import host_info
from monitor.package_manifest import SCHEMA, readme
from monitor.package_seal import SEALED_NAME, seal_folder
from monitor.package_seal import Writers as _Writers
from monitor.package_stream import PackedFile, estimate_ratio, pack_file
from monitor.redact import Redactor
from monitor.store import Store
from monitor.store_types import CrashRow

__all__ = ["NoSpaceError", "PackageError", "PackageResult", "build_package", "default_out_dir"]

_METADATA_ALLOWANCE = 1024 * 1024  # JSON files, README, excerpt: beyond the since-boot log


@dataclass(frozen=True, slots=True)
class PackageResult:
    """A finished package: its id, folder, files (as the manifest lists them, plus the manifest
    and SHA256SUMS last), the optional ``<id>.tar`` beside it, and leftovers cleaned first."""

    package_id: str
    path: Path
    files: tuple[FileEntry, ...]
    archive: Path | None
    manifest: dict[str, Any]
    removed_stale: tuple[Path, ...] = ()


def default_out_dir(config: object, state_dir: Path) -> Path:
    """Where packages go: ``[package] out_dir``, else the shipper's ``[ship] spool_dir``, else
    ``<state_dir>/spool`` (the shipper's default), so a finished package is shipped."""
    cfg = package_config_of(config)
    if cfg.out_dir is not None:
        return cfg.out_dir
    spool = getattr(getattr(config, "ship", None), "spool_dir", None)
    return Path(spool) if spool is not None else state_dir / "spool"


def build_package(
    store: Store,
    crash_id: int | str,
    out_dir: Path | None,
    config: object,
    *,
    dumps: Sequence[Path | DumpRef] | None = None,
    case_number: str | None = None,
    progress: bool | None = None,
    clock: Callable[[], float] = time.time,
) -> PackageResult:
    """Build the package of crash ``crash_id`` (id or key) in ``out_dir`` (None: :func:`default_out_dir`).

    ``config`` is the loaded :class:`monitor.config.Config` (its ``[package]``, ``[vendor]``
    and server sections are used when present; None: defaults). ``dumps`` overrides which
    files are packaged. ``progress``: a rich progress bar on stderr (None: when it is a
    terminal). Writes only inside ``out_dir``; reads the dumps, never changes them.
    Raises PackageError (unknown crash, encryption required but not configured, a file
    that cannot be read or written), NoSpaceError, StoreError.
    """
    cfg = package_config_of(config)
    crash = store.crash(int(crash_id) if str(crash_id).isdigit() else str(crash_id))
    if crash is None:
        raise PackageError(f"no crash {crash_id!r} in {store.path}", hint="`asewatch crashes` lists them")
    if cfg.encryption.required and not cfg.encryption.recipients:
        raise PackageError("[package.encryption] requires recipients and none are configured")
    recipients = [parse_recipient(k) for k in cfg.encryption.recipients]
    server_cfg = next((s for s in getattr(config, "servers", ()) if s.name == crash.server), None)
    out_dir = private_dir(
        Path(out_dir) if out_dir is not None else default_out_dir(config, store.path.parent)
    )
    removed = tuple(clean_stale(out_dir))
    collected = collect(store, crash, getattr(server_cfg, "errorlog", None), cfg)
    refs, notes = find_dumps(
        store, crash, collected.epoch, tuple(getattr(server_cfg, "dump_dirs", ())), dumps
    )
    created = datetime.fromtimestamp(clock(), UTC)
    with pinned(store, refs) as (refs, held_notes):
        notes += held_notes
        needed = _space_needed(refs, collected, cfg)
        if needed > free_bytes(out_dir) and not _make_room(store, config, out_dir, needed):
            raise NoSpaceError(out_dir, needed, free_bytes(out_dir))
        partial = _open_partial(out_dir, crash, created)
        package_id = partial.final.name
        job = _Job(
            partial.path, package_id, created, collected, refs, notes, recipients, cfg, config, case_number
        )
        try:
            manifest, files = _build(job, _progress(progress))
            archive = _archive(out_dir, package_id, partial.path) if cfg.archive else None
            path = partial.finish()
            if archive is not None:
                archive = archive.rename(out_dir / f"{package_id}.tar")
                fsync_dir(out_dir)
        except BaseException as exc:
            partial.discard()
            (out_dir / f".{package_id}.tar.partial").unlink(missing_ok=True)
            if is_no_space(exc):
                # The estimate was too low: say what a dump that does not compress at all needs.
                worst = max(needed, _space_needed(refs, collected, cfg, ratio=1.01))
                raise NoSpaceError(out_dir, worst, free_bytes(out_dir), during=_inside(exc, partial)) from exc
            if isinstance(exc, OSError):
                raise PackageError(f"packaging crash {crash.id} failed: {exc}") from exc
            raise
    return PackageResult(package_id, path, tuple(files), archive, manifest, removed)


@dataclass(frozen=True, slots=True)
class _Job:
    folder: Path
    package_id: str
    created: datetime
    c: Collected
    refs: list[DumpRef]
    notes: list[str]
    recipients: list[Any]
    cfg: PackageConfig
    config: object
    case_number: str | None


def _build(job: _Job, progress: Any) -> tuple[dict[str, Any], list[FileEntry]]:
    c, cfg, recipients = job.c, job.cfg, job.recipients
    sealed = cfg.encryption.scope == "package" and bool(recipients)
    content = private_dir(job.folder / "content") if sealed else job.folder
    redactor = Redactor(dict(cfg.redact.patterns))
    files, parts = write_metadata(content, c, redactor, cfg)
    packed = _pack_dumps(content, job.refs, [] if sealed else recipients, cfg, progress)
    files += [FileEntry(f"dumps/{p.name}", p.stored_bytes, p.stored_sha256, "dump") for p, _ in packed]
    vendor = vendor_of(job.config, job.case_number)
    for p, ref in packed:
        if ref.sha256 and ref.sha256 != p.original_sha256:
            job.notes.append(
                f"{p.source} changed since it was recorded: its SHA-256 differs from the record's"
            )
    encrypted = [SEALED_NAME] if sealed else [f"dumps/{p.name}" for p, _ in packed if p.encrypted]
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "package_id": job.package_id,
        "created": job.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "asewatch_version": monitor.__version__,
        "sealed": None,
        "server": {"name": c.crash.server, "host": _server_host(job.config, c.crash)},
        "host": host_info(),
        "ase": ase_json(c),
        "crash": crash_json(c),
        **parts,
        "dumps": [_dump_json(p, ref, cfg) for p, ref in packed],
        "dump_notes": job.notes,
        "encryption": {
            "scope": cfg.encryption.scope if recipients else "none",
            "recipients": list(cfg.encryption.recipients) if recipients else [],
            "files": encrypted,
        },
        "vendor": dataclasses.asdict(vendor) | {"missing": vendor.missing()},
        "unavailable": dict(c.unavailable),
        "redaction": {"file": "redaction.json", "totals": {}},
        "files": [],
    }
    manifest = redactor.json(manifest, "manifest.json", verbatim=VERBATIM_KEYS)
    # From the redacted manifest: nothing in it needs redacting again (and a second pass could
    # take a run of digits in a SHA-256 for a personal number).
    text = readme(manifest | {"files": [f.to_json() for f in files]})
    files.append(_put(content, "README.txt", text.encode("utf-8")))
    manifest["redaction"]["totals"] = redactor.log.totals()
    not_redacted = ["dumps/*: memory images, packaged as they are (encrypted when recipients are configured)"]
    files.append(_put(content, "redaction.json", _json(redactor.log.to_json(redactor.rules, not_redacted))))
    manifest["files"] = [f.to_json() for f in files]
    manifest_entry = _put(content, "manifest.json", _json(manifest))
    sums = _put(content, SUMS, sums_text([(f.name, f.sha256) for f in [*files, manifest_entry]]))
    if not sealed:
        return manifest, [*files, manifest_entry, sums]
    return seal_folder(job.folder, content, manifest, recipients, writer=_Writers(_put, _json))


def _pack_dumps(
    folder: Path, refs: list[DumpRef], recipients: list[Any], cfg: PackageConfig, progress: Any
) -> list[tuple[PackedFile, DumpRef]]:
    if not refs:
        return []
    private_dir(folder / "dumps")
    out: list[tuple[PackedFile, DumpRef]] = []
    used: set[str] = set()
    with progress as bar:
        task = bar.add_task("packaging dumps", total=sum(r.size or 0 for r in refs))
        for ref in refs:
            base = Redactor().text(ref.path.name, "")  # a file name is not allowed to carry a number either
            name = base + ".zst" + (".age" if recipients else "")
            n = 1
            while name in used:
                name = f"{base}.{n}.zst" + (".age" if recipients else "")
                n += 1
            used.add(name)
            packed = pack_file(
                ref.path,
                folder / "dumps" / name,
                level=cfg.compression_level,
                threads=cfg.threads,
                block_bytes=cfg.block_bytes,
                recipients=recipients,
                progress=lambda k: bar.advance(task, k),
            )
            out.append((packed, ref))
    return out


def _dump_json(p: PackedFile, ref: DumpRef, cfg: PackageConfig) -> dict[str, Any]:
    return {
        "name": f"dumps/{p.name}",
        "source_path": p.source,
        "state": ref.state,
        "truncated": ref.state == "truncated",
        "found_by": ref.found_by,
        "original_bytes": p.original_bytes,
        "original_sha256": p.original_sha256,
        "recorded_sha256": ref.sha256,
        "compression": "zstd",
        "compression_level": cfg.compression_level,
        "compressed_bytes": p.compressed_bytes,
        "compressed_sha256": p.compressed_sha256,
        "stored_bytes": p.stored_bytes,
        "stored_sha256": p.stored_sha256,
        "encrypted": p.encrypted,
    }


def _make_room(store: Store, config: object, out_dir: Path, needed: int) -> bool:
    """Ask dump retention to free ``needed`` bytes on ``out_dir``'s file system (it never evicts a
    held dump, so never one being packaged); False when it cannot or is not there."""
    dumps_cfg = getattr(config, "dumps", None)
    try:
        from monitor.dumps import make_room  # noqa: PLC0415 - the dump work's, when present
    except ImportError:
        return False
    if dumps_cfg is None:
        return False
    return bool(make_room(store, dumps_cfg, out_dir, needed, by="package"))


def _inside(exc: BaseException, partial: PartialDir) -> str | None:
    """The file an OSError was about, relative to the package when it is inside it."""
    name = getattr(exc, "filename", None)
    if not name:
        return None
    path = Path(name)
    return path.relative_to(partial.path).as_posix() if path.is_relative_to(partial.path) else str(path)


def _put(folder: Path, name: str, data: bytes) -> FileEntry:
    return FileEntry(name, len(data), write_private(folder / name, data), "metadata")


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _server_host(config: object, crash: CrashRow) -> str:
    for s in getattr(config, "servers", ()):
        if s.name == crash.server:
            return str(s.host)
    return str(host_info()["hostname"])


def _open_partial(out_dir: Path, crash: CrashRow, created: datetime) -> PartialDir:
    """The partial folder of a new package id ``<server>-crash<id>-<UTC time>[-n]``, unique even
    against another builder of the same crash in the same second."""
    base = f"{crash.server}-crash{crash.id}-{created:%Y%m%dT%H%M%SZ}"
    for n in range(1000):
        package_id = base if n == 0 else f"{base}-{n}"
        if (out_dir / package_id).exists():
            continue
        try:
            return PartialDir(out_dir, package_id)
        except FileExistsError:
            continue
    raise PackageError(f"{out_dir}: no free package name for {base}")


def _space_needed(refs: list[DumpRef], c: Collected, cfg: PackageConfig, ratio: float | None = None) -> int:
    """Bytes the package will take, pessimistically: each dump's size times its (sampled or
    configured, or ``ratio``) ratio, the errorlog since boot, an allowance, the margin; twice
    the dumps when the whole package is sealed (the plain folder exists until it is encrypted)."""
    dumps = 0
    for ref in refs:
        try:
            size = ref.path.stat().st_size
            r = ratio or (
                cfg.estimated_ratio if cfg.estimated_ratio is not None else estimate_ratio(ref.path)
            )
        except OSError as exc:
            raise PackageError(f"dump {ref.path}: cannot read: {exc.strerror or exc}") from exc
        dumps += int(size * r) + 4096
    log = (c.since_boot.size if c.since_boot else 0) + (c.excerpt.size if c.excerpt else 0)
    sealed = cfg.encryption.scope == "package" and bool(cfg.encryption.recipients)
    body = dumps + log + _METADATA_ALLOWANCE
    return (2 * body if sealed else body) + cfg.space_margin_bytes * (1 if refs else 0)


def _archive(out_dir: Path, package_id: str, folder: Path) -> Path:
    """``.<id>.tar.partial`` of the finished folder's files (renamed by the caller)."""
    dest = out_dir / f".{package_id}.tar.partial"
    with dest.open("xb") as raw:
        dest.chmod(0o600)
        with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            add_tree(tar, folder, package_id)
        raw.flush()
        os.fsync(raw.fileno())
    return dest


def _progress(enabled: bool | None) -> Any:
    from rich.console import Console  # noqa: PLC0415 - only when packaging
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    show = sys.stderr.isatty() if enabled is None else enabled
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
    )
