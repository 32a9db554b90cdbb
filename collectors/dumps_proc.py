"""Who holds a dump open for writing: one sweep of ``/proc/*/fd`` and ``/proc/*/fdinfo``.

Only :mod:`collectors.dumps` imports this module.

A descriptor is a writer's when its link names the file (same device and inode, checked
with ``stat`` on the link, which never opens the file) and its ``fdinfo`` flags have the
access mode ``O_WRONLY`` or ``O_RDWR``. A process is identified by pid and start time
(``/proc/PID/stat`` field 22), so a reused pid is not taken for the writer that died.
Processes whose descriptors cannot be listed (another user's, when the agent is not root)
are counted, not guessed at.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


@dataclass(frozen=True, slots=True)
class Writer:
    """A process holding a file open for writing. ``start``: its start time in clock ticks
    since boot; ``server``: the ``-s`` of a dataserver command line, else None."""

    pid: int
    start: int
    name: str
    server: str | None


@dataclass(slots=True)
class Sweep:
    """The result of one sweep: writers by (device, inode), and processes not inspectable."""

    writers: dict[tuple[int, int], set[Writer]] = field(default_factory=dict)
    denied: int = 0


def server_of(argv: list[str]) -> str | None:
    """The ``-s`` server name of a dataserver command line (also when a wrapper runs it).

    >>> server_of(["/opt/sybase/ASE-16_0/bin/dataserver", "-sPROD", "-e/x.log"])
    'PROD'
    >>> server_of(["/usr/bin/python3", "-s", "/srv/sim/bin/dataserver", "-s", "SIM"])
    'SIM'
    >>> server_of(["dd", "of=x"]) is None
    True
    """
    start = next((i for i, a in enumerate(argv) if os.path.basename(a).startswith("dataserver")), None)
    if start is None:
        return None
    args = argv[start + 1 :]
    for i, a in enumerate(args):
        if a == "-s" and i + 1 < len(args):
            return args[i + 1] or None
        if a.startswith("-s") and len(a) > 2:
            return a[2:]
    return None


class ProcReader:
    """Reads ``proc_root`` (``/proc``; a test may point it elsewhere)."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._root = proc_root

    def sweep(self, targets: Collection[tuple[int, int]], names: Collection[str]) -> Sweep:
        """Every process holding one of ``targets`` ((device, inode)) open for writing.

        ``names`` are the targets' file names: a descriptor is stat'ed only when its link
        ends in one of them (a dataserver holds thousands of descriptors). Never raises:
        vanished processes are skipped, unreadable ones counted in ``denied``.
        """
        out = Sweep()
        if not targets:
            return out
        wanted = set(targets)
        tails = {"/" + n for n in names}
        try:
            pids = [e.name for e in os.scandir(self._root) if e.name.isdigit()]
        except OSError:
            return out
        me = str(os.getpid())
        for pid in pids:
            if pid == me:
                continue  # the agent reads dumps, it never writes them
            fd_dir = self._root / pid / "fd"
            try:
                fds = os.listdir(fd_dir)
            except PermissionError:
                out.denied += 1
                continue
            except OSError:
                continue
            for fd in fds:
                found = self._writer_fd(pid, fd, fd_dir, wanted, tails)
                if found is not None:
                    writer = self.writer(int(pid))
                    if writer is not None:
                        out.writers.setdefault(found, set()).add(writer)
        return out

    def _writer_fd(
        self, pid: str, fd: str, fd_dir: Path, wanted: set[tuple[int, int]], tails: set[str]
    ) -> tuple[int, int] | None:
        try:
            link = os.readlink(fd_dir / fd).removesuffix(" (deleted)")
            if not link.startswith("/") or not any(link.endswith(t) for t in tails):
                return None
            st = os.stat(fd_dir / fd)  # the magic link's target, without opening it
            ident = (st.st_dev, st.st_ino)
            if ident not in wanted:
                return None
            info = (self._root / pid / "fdinfo" / fd).read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("flags:"):
                flags = int(line.split()[1], 8)
                return ident if (flags & os.O_ACCMODE) in _WRITE_MODES else None
        return None

    def writer(self, pid: int) -> Writer | None:
        """The process ``pid`` as a Writer (its start time, name and server), None when gone."""
        start = self.start_time(pid)
        if start is None:
            return None
        base = self._root / str(pid)
        try:
            name = (base / "comm").read_text(encoding="utf-8", errors="replace").strip()
            argv = (base / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            name, argv = "?", []
        return Writer(pid, start, name, server_of([a for a in argv if a]))

    def start_time(self, pid: int) -> int | None:
        """Start time (clock ticks since boot) of a live process, None when gone or a zombie."""
        try:
            text = (self._root / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        # The command name is in parentheses and may hold spaces: split after the last ')'.
        rest = text[text.rfind(")") + 2 :].split()
        if len(rest) < 20 or rest[0] in ("Z", "X"):
            return None
        return int(rest[19])

    def alive(self, writer: Writer) -> bool:
        """Whether that very process (pid and start time) still runs."""
        return self.start_time(writer.pid) == writer.start
