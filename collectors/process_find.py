"""Finding dataservers: argv and RUN_ file parsers, and the process-table match.

Private to ``collectors.process``, which re-exports the public names; import them
from there. Flags (ASE 15.x/16.x): ``-d`` master device, ``-e`` errorlog, ``-c``
config file, ``-M`` shared-memory file directory, ``-N`` SySAM properties, ``-i``
interfaces directory, ``-s`` server name, ``-T`` trace flag (repeatable), and
``-ONLINE:N`` on the engine child processes of a process-mode server. A value follows
its flag directly (``-sPROD``) or as the next argument (``-s PROD``).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from monitor.errors import InputError

_ONLINE = re.compile(r"-ONLINE:(\d+)")
# `dataserver`, or a renamed copy such as `dataserver_16`; not `dataserver.log` (a tail of a file).
_DATASERVER = re.compile(r"dataserver(?:[_-][\w-]*)?")
_VALUE_FLAGS = {
    "d": "master_device",
    "e": "errorlog",
    "c": "config_file",
    "M": "shm_dir",
    "N": "sysam_properties",
    "i": "interfaces_dir",
    "s": "server",
}


@dataclass(frozen=True, slots=True)
class DataserverArgs:
    """The flags of one dataserver command line, as written (relative paths are not resolved).

    ``online_engine`` is N for a process-mode engine child (``-ONLINE:N``), else ``None``.
    """

    server: str | None = None
    errorlog: str | None = None
    config_file: str | None = None
    shm_dir: str | None = None
    master_device: str | None = None
    online_engine: int | None = None
    trace_flags: tuple[int, ...] = ()
    sysam_properties: str | None = None
    interfaces_dir: str | None = None


def dataserver_index(argv: Sequence[str]) -> int | None:
    """Index of the element of ``argv`` whose basename names a dataserver, or ``None``.

    The simulator runs as ``<python> /dir/bin/dataserver …``, a real server as
    ``/opt/sybase/ASE-16_0/bin/dataserver …``; both match.

    >>> dataserver_index(["/usr/bin/python3", "-s", "/srv/sim/bin/dataserver", "-sSIM"])
    2
    >>> dataserver_index(["tail", "-f", "/var/log/dataserver.log"]) is None
    True
    """
    for i, arg in enumerate(argv):
        if _DATASERVER.fullmatch(os.path.basename(arg)):
            return i
    return None


def parse_dataserver_args(argv: Sequence[str]) -> DataserverArgs:
    """Parse the dataserver flags in ``argv`` (a process's cmdline or a RUN_ file's command).

    Only the arguments after the dataserver element are read, so an interpreter's own
    flags (``python -s …``) are not mistaken for the server's; when no element names a
    dataserver, every element is read as a flag. Unknown flags and trace flags that
    are not numbers are skipped. Pure; raises nothing.

    >>> a = parse_dataserver_args(["/opt/sybase/ASE-16_0/bin/dataserver", "-d/opt/sybase/data/master.dat",
    ...     "-e/opt/sybase/ASE-16_0/install/PROD.log", "-s", "PROD", "-T11889", "-T7717"])
    >>> a.server, a.errorlog, a.master_device, a.trace_flags, a.online_engine
    ('PROD', '/opt/sybase/ASE-16_0/install/PROD.log', '/opt/sybase/data/master.dat', (11889, 7717), None)
    >>> parse_dataserver_args(["/usr/bin/python3", "-s", "/srv/sim/bin/dataserver", "-sSIM", "-e", "sim.log"])
    DataserverArgs(server='SIM', errorlog='sim.log', config_file=None, shm_dir=None, master_device=None, \
online_engine=None, trace_flags=(), sysam_properties=None, interfaces_dir=None)
    >>> parse_dataserver_args(["dataserver", "-ONLINE:2"]).online_engine
    2
    """
    start = dataserver_index(argv)
    args = list(argv[0 if start is None else start + 1 :])
    values: dict[str, str] = {}
    traces: list[int] = []
    engine: int | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        online = _ONLINE.match(arg)
        if online:
            engine = int(online.group(1))
            continue
        if len(arg) < 2 or arg[0] != "-" or (arg[1] not in _VALUE_FLAGS and arg[1] != "T"):
            continue
        value = arg[2:]
        if not value and i < len(args) and not args[i].startswith("-"):
            value = args[i]
            i += 1
        if not value:
            continue
        if arg[1] == "T":
            traces.extend(int(t) for t in value.split(",") if t.strip().isdigit())
        else:
            values[_VALUE_FLAGS[arg[1]]] = value
    return DataserverArgs(online_engine=engine, trace_flags=tuple(traces), **values)


def parse_run_file(text: str, source: str = "RUN file") -> DataserverArgs:
    r"""Parse a RUN_<SERVER> file: its dataserver command, lines joined on ``\`` continuations.

    Comment lines (the header ``# SAP Adaptive Server name: …``) and other commands are
    skipped; shell variables are not expanded. Raises ``InputError(source, …)`` when no
    line runs a dataserver or the quoting is broken.

    >>> run = '''#!/bin/sh
    ... # SAP Adaptive Server name:     MYSYBASE
    ... /opt/sybase/ASE-16_0/bin/dataserver \\
    ... -d/opt/sybase/data/master.dat \\
    ... -e/opt/sybase/ASE-16_0/install/MYSYBASE.log \\
    ... -c/opt/sybase/ASE-16_0/MYSYBASE.cfg \\
    ... -M/opt/sybase/ASE-16_0 \\
    ... -N/opt/sybase/ASE-16_0/sysam/MYSYBASE.properties \\
    ... -i/opt/sybase \\
    ... -sMYSYBASE \\
    ... -T11889 \\
    ... '''
    >>> a = parse_run_file(run)
    >>> a.server, a.errorlog, a.trace_flags
    ('MYSYBASE', '/opt/sybase/ASE-16_0/install/MYSYBASE.log', (11889,))
    >>> a.config_file, a.shm_dir
    ('/opt/sybase/ASE-16_0/MYSYBASE.cfg', '/opt/sybase/ASE-16_0')
    >>> a.master_device, a.sysam_properties, a.interfaces_dir
    ('/opt/sybase/data/master.dat', '/opt/sybase/ASE-16_0/sysam/MYSYBASE.properties', '/opt/sybase')
    >>> parse_run_file("#!/bin/sh\necho hello\n", source="RUN_X")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    monitor.errors.InputError: RUN_X: no line runs a dataserver (expected e.g. ...)
    """
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        if line.lstrip().startswith("#"):
            continue
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise InputError(source, f"cannot split the command line: {exc}") from exc
        if dataserver_index(tokens) is not None:
            return parse_dataserver_args(tokens)
    raise InputError(
        source,
        "no line runs a dataserver",
        hint="expected e.g. '/opt/sybase/ASE-16_0/bin/dataserver -sNAME …'",
    )


@dataclass(frozen=True, slots=True)
class DataserverTarget:
    """One configured server. ``name`` labels every event; the files are extra ways to find it.

    A process matches by ``-s<name>``, by the pid in ``pid_file``, or by the RUN_ file's
    ``-s`` (or, when the process has no ``-s``, its ``-d`` master device). A dataserver
    whose ``-s`` names another server never matches.
    """

    name: str
    pid_file: Path | None = None
    run_file: Path | None = None


@dataclass(frozen=True, slots=True)
class DataserverProcess:
    """A running dataserver process as found in the process table."""

    pid: int
    create_time: float  # POSIX seconds; (pid, create_time) is the identity
    ppid: int
    cmdline: tuple[str, ...]
    args: DataserverArgs

    @property
    def engine(self) -> int:
        """0 for the main process (threaded mode, or engine 0 in process mode), else N of -ONLINE:N."""
        return self.args.online_engine or 0


@dataclass(frozen=True, slots=True)
class Hints:
    """What a target's files say now: the pid in its pid file, the flags in its RUN_ file."""

    pid: int | None
    run: DataserverArgs | None


def inspect_pid(pid: int) -> DataserverProcess | None:
    """The dataserver running as ``pid``, or None. Reads /proc/PID/cmdline; stat only for hits."""
    try:
        if psutil.LINUX:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
            if b"dataserver" not in raw:  # cheap reject for nearly every pid
                return None
            argv = tuple(os.fsdecode(a) for a in raw.rstrip(b"\0").split(b"\0"))
        else:
            argv = tuple(psutil.Process(pid).cmdline())
        if dataserver_index(argv) is None:
            return None
        ps = psutil.Process(pid)
        with ps.oneshot():
            return DataserverProcess(pid, ps.create_time(), ps.ppid(), argv, parse_dataserver_args(argv))
    except (OSError, psutil.Error):  # gone, a zombie, or not ours to read
        return None


def read_hints(target: DataserverTarget) -> tuple[Hints, list[InputError]]:
    """What the target's pid file and RUN_ file say now. A missing pid file means 'not running'."""
    pid: int | None = None
    run: DataserverArgs | None = None
    problems: list[InputError] = []
    if target.pid_file is not None:
        try:
            words = target.pid_file.read_text(encoding="ascii", errors="replace").split()
            pid = int(words[0]) if words else None
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(InputError(str(target.pid_file), f"cannot read the pid file: {exc.strerror}"))
        except ValueError:
            problems.append(InputError(str(target.pid_file), "the pid file does not start with a number"))
    if target.run_file is not None:
        try:
            run = parse_run_file(target.run_file.read_text(errors="replace"), source=str(target.run_file))
        except OSError as exc:
            problems.append(InputError(str(target.run_file), f"cannot read the RUN file: {exc.strerror}"))
        except InputError as exc:
            problems.append(exc)
    return Hints(pid, run), problems


def match_target(
    target: DataserverTarget, hints: Hints, candidates: Iterable[DataserverProcess], engine0: set[int]
) -> list[DataserverProcess]:
    """The candidates that belong to ``target``; ``engine0`` (its known engine-0 pids) grows."""
    names = {target.name}
    if hints.run is not None and hints.run.server:
        names.add(hints.run.server)
    run_master = hints.run.master_device if hints.run is not None else None
    mine = [c for c in candidates if c.args.server is None or c.args.server in names]
    if run_master is not None:  # the same name from another installation (a copy, a test, a demo)
        mine = [c for c in mine if c.args.master_device in (None, run_master)]
    found = []
    for c in mine:
        if c.args.online_engine is None and (
            c.args.server is not None
            or c.pid == hints.pid
            or (run_master is not None and c.args.master_device == run_master)
        ):
            found.append(c)
            engine0.add(c.pid)
    # Real engine children carry only `-ONLINE:N`: they belong to the server whose engine 0 forked them.
    found += [
        c
        for c in mine
        if c.args.online_engine is not None and (c.args.server is not None or c.ppid in engine0)
    ]
    return found


def last_pid() -> int | None:
    """The pid the kernel allocated last (``/proc/loadavg``'s last field), or None off Linux."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def file_sig(path: Path | None) -> object:
    """Changes when the file is written, replaced or removed."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError as exc:
        return exc.errno
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def find_dataservers(target: str | DataserverTarget | None = None) -> list[DataserverProcess]:
    """The dataserver processes running now, of one server (by name or target) or all of them.

    Reads the process table once (a few µs per process). Raises ``InputError`` when the
    target's pid file or RUN_ file cannot be read or parsed. Engine 0 comes first.
    """
    found = [p for pid in psutil.pids() if (p := inspect_pid(pid)) is not None]
    if target is None:
        return sorted(found, key=lambda p: (p.engine, p.pid))
    if isinstance(target, str):
        target = DataserverTarget(target)
    hints, problems = read_hints(target)
    if problems:
        raise problems[0]
    return match_target(target, hints, found, set())
