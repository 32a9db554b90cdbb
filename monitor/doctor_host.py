"""Doctor's server checks: errorlog, dump conditions, dump folders, core file limit."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from monitor.doctor import Check, DoctorInputs, ProcessFacts, ServerFacts, Verdict
from monitor.events_changes import DumpConditions

__all__ = ["core_limit", "server_checks"]


def server_checks(server: ServerFacts, inputs: DoctorInputs) -> Iterator[Check]:
    """Every check of one server, in a fixed order."""
    proc = inputs.process(server.name)
    shm = inputs.shared_memory(server.name)
    cond = inputs.dump_conditions(server.name)
    yield _errorlog(server)
    yield _conditions(server.name, cond)
    folders = list(server.dump_dirs)
    for d in cond.directories if cond is not None else ():
        if d and Path(d) not in folders:
            folders.append(Path(d))
    if not folders:
        yield Check(
            "dump folders",
            server.name,
            "fail",
            "no dump folder is configured or named by sp_shmdumpconfig",
            f'add dump_dirs = ["/sybase/dumps"] to the [[server]] table of {server.name} and name it in '
            "sp_shmdumpconfig",
        )
    for folder in folders:
        yield _folder(server.name, folder, proc, shm)
    yield _core(server.name, proc, shm, inputs.proc_root)


def _errorlog(server: ServerFacts) -> Check:
    name = "errorlog readable"
    if server.errorlog is None:
        return Check(
            name,
            server.name,
            "fail",
            "no errorlog is configured and no running dataserver names one (-e)",
            f'set errorlog = "/sybase/ASE-16_0/install/{server.name}.log" in the [[server]] table',
        )
    try:
        with server.errorlog.open("rb") as f:
            f.read(1)
    except OSError as exc:
        return Check(
            name,
            server.name,
            "fail",
            f"{server.errorlog}: {exc.strerror or exc}",
            f"check the path, and let the agent's user read it (e.g. chmod g+r {server.errorlog} and add the "
            "agent's user to the sybase group)",
        )
    return Check(name, server.name, "ok", str(server.errorlog))


def _has(cond: DumpConditions, kind: str, value: str | None = None) -> bool:
    for i, t in enumerate(cond.types):
        v = cond.values[i] if i < len(cond.values) else None
        if t.strip().lower() == kind and (value is None or (v or "").strip() == value):
            return True
    return False


def _conditions(server: str, cond: DumpConditions | None) -> Check:
    name = "dump conditions"
    if cond is None:
        return Check(
            name,
            server,
            "warn",
            "unknown: no database connection, or the settings were not read yet",
            "configure [database] so asewatch can read sp_shmdumpconfig, or check it by hand",
        )
    if cond.error is not None:
        return Check(
            name,
            server,
            "warn",
            f"sp_shmdumpconfig could not be read: {cond.error}",
            "give the monitoring login the role sp_shmdumpconfig needs (sa_role), or check it by hand",
        )
    missing = []
    if cond.enabled is not True:
        missing.append(f"'dump on conditions' is {'off' if cond.enabled is False else 'unknown'}")
    if not _has(cond, "signal", "11"):
        missing.append("no signal 11 condition")
    if not _has(cond, "timeslice"):
        missing.append("no timeslice condition")
    if missing:
        return Check(
            name,
            server,
            "fail",
            "; ".join(missing) + f" ({cond.describe()})",
            "sp_configure 'dump on conditions', 1; sp_shmdumpconfig 'add', 'signal', 11, 1, '<dump folder>'; "
            "sp_shmdumpconfig 'add', 'timeslice', NULL, 1, '<dump folder>'",
        )
    return Check(name, server, "ok", cond.describe())


def _writable_by(st: os.stat_result, proc: ProcessFacts) -> bool:
    if proc.uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == proc.uid:
        return bool(mode & stat.S_IWUSR and mode & stat.S_IXUSR)
    if st.st_gid in proc.gids:
        return bool(mode & stat.S_IWGRP and mode & stat.S_IXGRP)
    return bool(mode & stat.S_IWOTH and mode & stat.S_IXOTH)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _folder(server: str, folder: Path, proc: ProcessFacts | None, shm: int | None) -> Check:
    name = f"dump folder {folder}"
    try:
        st = folder.stat()
    except OSError as exc:
        return Check(
            name,
            server,
            "fail",
            f"{folder}: {exc.strerror or exc}",
            f"mkdir -p {folder} (owned by the user the dataserver runs as)",
        )
    if not stat.S_ISDIR(st.st_mode):
        return Check(
            name, server, "fail", f"{folder} is not a folder", "point the dump folder at a directory"
        )
    problems: list[str] = []
    fixes: list[str] = []
    verdict: Verdict = "ok"
    if proc is None:
        problems.append("the dataserver is not running: cannot tell whether its user can write here")
        fixes.append("run doctor again while the server is up")
        verdict = "warn"
    elif not _writable_by(st, proc):
        problems.append(f"not writable by uid {proc.uid} (the dataserver's user)")
        fixes.append(f"chown {proc.uid} {folder} && chmod u+rwx {folder}")
        verdict = "fail"
    try:
        vfs = os.statvfs(folder)
        free = vfs.f_bavail * vfs.f_frsize
    except OSError as exc:
        return Check(
            name, server, "fail", f"cannot tell its free space: {exc.strerror or exc}", "check the mount"
        )
    if shm is None:
        problems.append(f"{_gib(free)} free; the shared memory size is unknown (no database connection)")
        fixes.append("configure [database] so asewatch knows 'max memory'")
        verdict = "fail" if verdict == "fail" else "warn"
    elif free < shm:
        problems.append(f"{_gib(free)} free, one dump needs up to {_gib(shm)}")
        fixes.append(
            f"free at least {_gib(shm - free)} in {folder}, or point the dumps at a bigger file system"
        )
        verdict = "fail"
    detail = "; ".join(problems) if problems else f"{_gib(free)} free for dumps of up to {_gib(shm or 0)}"
    return Check(name, server, verdict, detail, "; ".join(fixes))


def core_limit(proc_root: Path, pid: int) -> int:
    """The soft "Max core file size" of process ``pid`` in bytes (-1: unlimited), from
    ``<proc_root>/<pid>/limits``. Raises OSError when unreadable, ValueError when the
    line is missing.

    The file's lines look like ``Max core file size        0        unlimited    bytes``.
    """
    for line in (proc_root / str(pid) / "limits").read_text(encoding="utf-8").splitlines():
        if line.startswith("Max core file size"):
            soft = line[len("Max core file size") :].split()[0]
            return -1 if soft == "unlimited" else int(soft)
    raise ValueError("no 'Max core file size' line")


def _core(server: str, proc: ProcessFacts | None, shm: int | None, proc_root: Path) -> Check:
    name = "core file limit"
    fix = (
        "add `ulimit -c unlimited` to the RUN_ file (or LimitCORE=infinity in the systemd unit) and restart "
        "the server at the next maintenance window"
    )
    if proc is None:
        return Check(name, server, "warn", "the dataserver is not running", "run doctor again while it is up")
    try:
        limit = core_limit(proc_root, proc.pid)
    except (OSError, ValueError) as exc:
        return Check(
            name, server, "warn", f"cannot read the limits of pid {proc.pid}: {exc}", "run doctor as root"
        )
    if limit == -1:
        return Check(name, server, "ok", f"unlimited (pid {proc.pid})")
    if limit == 0:
        return Check(name, server, "fail", f"0: the OS writes no core file when pid {proc.pid} dies", fix)
    if shm is not None and limit < shm:
        return Check(
            name,
            server,
            "warn",
            f"{_gib(limit)}: a core file would be cut short ({_gib(shm)} shared memory)",
            fix,
        )
    return Check(name, server, "ok", f"{limit} bytes (pid {proc.pid})")
