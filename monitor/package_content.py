"""What a package says besides the dumps: gathered from the store and the errorlog, then written
redacted. Each fact that cannot be had is recorded with its reason (``unavailable``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.codec import decode_event
from monitor.config_package import PackageConfig
from monitor.events import CrashBlock
from monitor.package_errorlog import LogPiece, excerpt, locate, span
from monitor.package_fs import write_private, write_private_stream
from monitor.package_host import parse_version
from monitor.package_sources import (
    Boot,
    Unavailable,
    boots_around,
    cfg_file,
    change_ledger,
    crash_epoch,
    dump_conditions_at,
    errorlog_path,
    flags_at,
    flight_recorder,
    kernel_mode,
    settings_at,
    version_of,
)
from monitor.redact import Redactor
from monitor.store import Store
from monitor.store_reader import StoreReader
from monitor.store_types import CrashRow
from monitor.suspects_agent import group_of, stored

#: JSON keys whose values are of asewatch's own making (hashes, keys, ids): never redacted, since a
#: run of digits in a hex digest can look like a personal number.
VERBATIM_KEYS = frozenset(
    {"sha256", "original_sha256", "compressed_sha256", "stored_sha256", "recorded_sha256", "recipients",
     "signature", "key", "package_id", "crash_key"}
)  # fmt: skip


_CFG_MAX = 4 * 1024 * 1024  # a .cfg is some 100 KB; more is not a .cfg


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of the package: ``name`` relative to its folder; ``kind`` metadata or dump."""

    name: str
    size: int
    sha256: str
    kind: str

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``files[]`` element."""
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "kind": self.kind}


@dataclass
class Collected:
    """Everything known about one crash, unredacted (it never leaves memory in this form)."""

    crash: CrashRow
    block: CrashBlock | None
    epoch: float
    boot: Boot | None = None
    version: str | None = None
    kernel_mode: str | None = None
    errorlog: Path | None = None
    excerpt: LogPiece | None = None
    since_boot: LogPiece | None = None
    settings: dict[str, Any] | None = None
    cfg_file: Path | None = None
    dump_conditions: dict[str, Any] | None = None
    flags: dict[str, str] | None = None
    changes: list[dict[str, Any]] | None = None
    flight: dict[str, Any] | None = None
    suspects: dict[str, Any] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)


def collect(store: Store, crash: CrashRow, configured_errorlog: Path | None, cfg: PackageConfig) -> Collected:
    """Read every fact of ``crash`` (one store snapshot, then the errorlog file). Raises
    StoreError when the store cannot be read at all; a missing fact is recorded, not raised."""
    block = _block(crash)
    out = Collected(crash, block, crash_epoch(crash.time, crash.exit_time))
    at = out.epoch
    when = crash.time or datetime.fromtimestamp(at)
    with store.reader() as r:
        out.boot, next_boot = boots_around(r, crash.server, when)
        out.version = _try(out, "ase.version", lambda: version_of(r, crash.server, out.boot))
        out.errorlog = _try(out, "errorlog", lambda: errorlog_path(r, crash.server, configured_errorlog))
        out.settings = _try(out, "configuration.settings", lambda: settings_at(r, crash.server, at))
        out.cfg_file = _try(
            out, "configuration.cfg_file", lambda: cfg_file(r, crash.server, out.settings, at)
        )
        out.dump_conditions = _try(
            out, "configuration.dump_conditions", lambda: dump_conditions_at(r, crash.server, at)
        )
        out.flags = _try(out, "configuration.flags", lambda: flags_at(r, crash.server, at))
        out.changes = _try(
            out, "configuration.changes", lambda: change_ledger(r, crash.server, when, cfg.ledger_days)
        )
        out.flight = _try(out, "flight_recorder", lambda: flight_recorder(r, crash.key))
        out.suspects = _try(out, "suspects", lambda: _suspects(r, crash))
        if out.errorlog is not None:
            _read_log(out, out.errorlog, next_boot, cfg)
        sysconf = (out.settings or {}).get("sysconfigures", {}).get("parameters")
        threaded = _try(out, "errorlog", lambda: _threadpool(out.since_boot))
        out.kernel_mode = _try(
            out, "ase.kernel_mode", lambda: kernel_mode(r, crash.server, sysconf, threaded)
        )
    return out


def _suspects(r: StoreReader, crash: CrashRow) -> dict[str, Any]:
    """The ranked suspects of the crash's group as the agent last stored them."""
    doc = stored(r, crash.server)
    group = group_of(doc, crash.signature)
    if doc is None or group is None:
        raise Unavailable("not ranked yet (the agent ranks the suspects a few seconds after a crash)")
    return {"server": crash.server, "computed_at": doc.get("computed_at"), "group": group}


def _threadpool(piece: LogPiece | None) -> bool | None:
    """Whether the run's log shows threaded-mode engines (None: no log to look at)."""
    if piece is None:
        return None
    try:
        return piece.contains(b" of Threadpool ")
    except OSError as exc:
        raise Unavailable(f"{piece.path}: cannot read: {exc.strerror or exc}") from None


def _block(crash: CrashRow) -> CrashBlock | None:
    if not crash.payload or crash.payload == "{}":
        return None
    ev = decode_event("CrashBlock", crash.payload)
    return ev if isinstance(ev, CrashBlock) else None


def _try(out: Collected, what: str, read: Any) -> Any:
    try:
        return read()
    except Unavailable as exc:
        out.unavailable[what] = str(exc)
        return None


def _read_log(out: Collected, path: Path, next_boot: Boot | None, cfg: PackageConfig) -> None:
    crash, block = out.crash, out.block
    try:
        if block is None or crash.time is None:
            out.unavailable["errorlog.excerpt"] = "the crash has no errorlog block (an unclean stop)"
        else:
            at = locate(path, block.offset, crash.time, block.spid)
            if at is None:
                out.unavailable["errorlog.excerpt"] = (
                    f"{path} no longer holds the crash block (rotated or truncated since?)"
                )
            else:
                out.excerpt = excerpt(
                    path, at, cfg.excerpt_lines_before, block.lines + cfg.excerpt_lines_after
                )
        start, end = 0, None
        if out.boot is None:
            out.unavailable["errorlog.boot"] = (
                "no boot before the crash in the store: the log is given from its start"
            )
        else:
            found = locate(path, out.boot.offset, out.boot.time)
            start = found if found is not None else 0
            if found is None:
                out.unavailable["errorlog.boot"] = (
                    f"{path} no longer holds the boot: the log is given from its start"
                )
        if next_boot is not None:
            nxt = locate(path, next_boot.offset, next_boot.time)
            end = nxt if nxt is not None and nxt > start else None
        out.since_boot = span(path, start, end, cfg.errorlog_max_bytes)
    except OSError as exc:
        out.unavailable["errorlog"] = f"{path}: cannot read: {exc.strerror or exc}"


def crash_json(c: Collected) -> dict[str, Any]:
    """The manifest's ``crash`` object (unredacted)."""
    row, b = c.crash, c.block
    return {
        "id": row.id, "key": row.key,
        "time": row.time.isoformat(timespec="milliseconds") if row.time else None,
        "kind": row.kind, "signal": row.signal, "signature": row.signature, "state": row.state,
        "server_terminated": row.server_terminated,
        "stack": None if row.complete is None else ("complete" if row.complete else "truncated"),
        "spid": row.spid, "kpid": row.kpid, "suid": b.suid if b else None, "family": row.family,
        "login": row.login, "host": row.host, "program": row.program, "procedure": row.procedure,
        "sql": row.sql, "sql_text": list(b.sql_text) if b else [],
        "statement_number": b.statement_number if b else None, "line_number": b.line_number if b else None,
        "address_function": b.address_function if b else None, "frames": list(b.frames) if b else [],
        "exit_pid": row.exit_pid, "exit_time": row.exit_time,
    }  # fmt: skip


def ase_json(c: Collected) -> dict[str, Any]:
    """The manifest's ``ase`` object."""
    parsed = parse_version(c.version).to_json() if c.version else {}
    keys = ("release", "service_pack", "patch_level", "ebf", "architecture", "os", "build", "bits",
            "build_type", "build_date")  # fmt: skip
    return {
        "version": c.version,
        **{k: parsed.get(k) for k in keys},
        "kernel_mode": c.kernel_mode,
        "boot_time": c.boot.time.isoformat(timespec="milliseconds") if c.boot else None,
    }


def write_metadata(
    folder: Path, c: Collected, redactor: Redactor, cfg: PackageConfig
) -> tuple[list[FileEntry], dict[str, Any]]:
    """Write the errorlog pieces and the JSON files (redacted) into ``folder``; returns the
    files and the manifest's ``errorlog``, ``flight_recorder`` and ``configuration`` objects.
    Raises OSError (a full disk among them)."""
    files: list[FileEntry] = []

    def put(name: str, data: bytes) -> str:
        (folder / name).parent.mkdir(mode=0o700, exist_ok=True)
        (folder / name).parent.chmod(0o700)
        digest = write_private(folder / name, data)
        files.append(FileEntry(name, len(data), digest, "metadata"))
        return name

    def put_json(name: str, value: Any) -> str:
        clean = redactor.json(value, name, verbatim=VERBATIM_KEYS)
        return put(name, (json.dumps(clean, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    def put_log(name: str, piece: LogPiece) -> str:
        (folder / name).parent.mkdir(mode=0o700, exist_ok=True)
        (folder / name).parent.chmod(0o700)
        text = (line.decode("utf-8", "surrogateescape") for line in piece.lines())
        chunks = (line.encode("utf-8", "surrogateescape") for line in redactor.errorlog_lines(text, name))
        size, digest = write_private_stream(folder / name, chunks)
        files.append(FileEntry(name, size, digest, "metadata"))
        return name

    errorlog: dict[str, Any] = {
        "path": str(c.errorlog) if c.errorlog else None,
        "excerpt": None,
        "since_boot": None,
    }
    if c.excerpt is not None:
        errorlog["excerpt"] = {
            "file": put_log("errorlog/excerpt.log", c.excerpt),
            "start_offset": c.excerpt.start,
            "end_offset": c.excerpt.end,
            "lines_before": cfg.excerpt_lines_before,
            "lines_after": cfg.excerpt_lines_after,
        }
    if c.since_boot is not None:
        errorlog["since_boot"] = {
            "file": put_log("errorlog/since-boot.log", c.since_boot),
            "start_offset": c.since_boot.start,
            "end_offset": c.since_boot.end,
            "cut_bytes": c.since_boot.cut,
            "boot_time": c.boot.time.isoformat(timespec="milliseconds") if c.boot else None,
        }
    flight = None
    if c.flight is not None:
        flight = {
            "file": put_json("flight-recorder.json", c.flight),
            "complete": bool(c.flight.get("complete")),
            "truncated": bool(c.flight.get("truncated")),
            "statements": len(c.flight.get("statements", ())),
        }
    cfg_name = None
    if c.cfg_file is not None:
        try:
            with c.cfg_file.open("rb") as f:
                raw = f.read(_CFG_MAX).decode("utf-8", "surrogateescape")
        except OSError as exc:
            c.unavailable["configuration.cfg_file"] = f"{c.cfg_file}: cannot read: {exc.strerror or exc}"
        else:
            cfg_name = f"config/{c.cfg_file.name}"
            put(cfg_name, redactor.text(raw, cfg_name).encode("utf-8", "surrogateescape"))
    conf: dict[str, Any] = {
        "settings": put_json("config/settings.json", c.settings) if c.settings is not None else None,
        "cfg_file": cfg_name,
        "dump_conditions": c.dump_conditions["summary"] if c.dump_conditions else None,
        "dump_conditions_file": (
            put_json("config/dump-conditions.json", c.dump_conditions)
            if c.dump_conditions is not None
            else None
        ),
        "flags": put_json("config/flags.json", c.flags) if c.flags is not None else None,
        "changes": put_json("config/changes.json", c.changes) if c.changes is not None else None,
        "changes_days": cfg.ledger_days,
    }
    suspects = None
    if c.suspects is not None:
        group = c.suspects["group"]
        suspects = {"file": put_json("suspects.json", c.suspects), "crashes": group.get("crashes"),
                    "top": [f"{x['kind']} {x['name']}" for x in group.get("suspects", ())[:3]]}  # fmt: skip
    parts = {"errorlog": errorlog, "flight_recorder": flight, "configuration": conf, "suspects": suspects}
    return files, parts
