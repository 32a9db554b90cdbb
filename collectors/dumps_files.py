"""Reading dump files safely: what a name in a dump folder is, its SHA-256, its declared size.

Only :mod:`collectors.dumps` imports this module.

Safety rules (a dump folder is often writable by the ``sybase`` user, and the agent may run
as root): a name is looked at with ``lstat`` relative to an open descriptor of the folder,
never through a symbolic link; a symbolic link, FIFO, device, socket or a regular file with
more than one hard link is refused without being opened; a file is opened with
``O_NOFOLLOW | O_NONBLOCK`` relative to the folder descriptor and the open file must be the
very file judged (same device and inode, still regular); a path with a ``..`` component or
whose real path is outside the folder is refused.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from monitor.events_dumps import RefusalKind

HASH_CHUNK = 1 << 20  # bytes per read while hashing: constant memory whatever the dump's size
MAX_PHDRS_BYTES = 64 << 20  # an ELF core's program header table larger than this is not believed
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class FileStat:
    """What ``lstat`` said about a regular file: identity, size and mtime (ns)."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @property
    def mtime(self) -> float:
        """The mtime in POSIX seconds."""
        return self.mtime_ns / 1e9


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a name is not read: ``kind`` and a sentence for the log; ``mtime`` of the name itself."""

    kind: RefusalKind
    reason: str
    mtime: float


class HashCancelledError(Exception):
    """Hashing stopped because the watcher is stopping (the hash is resumed at the next start)."""


def judge(st: os.stat_result, name: str) -> FileStat | Refusal | None:
    """Classify an ``lstat`` result: a regular file to read, a refusal, or None (a folder: ignored).

    >>> import os
    >>> judge(os.lstat("/dev/null"), "null").kind
    'device'
    """
    mode, mtime = st.st_mode, st.st_mtime_ns / 1e9
    if stat.S_ISLNK(mode):
        return Refusal("symlink", f"{name} is a symbolic link; dumps are never read through links", mtime)
    if stat.S_ISFIFO(mode):
        return Refusal("fifo", f"{name} is a FIFO, not a dump file", mtime)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return Refusal("device", f"{name} is a device file, not a dump file", mtime)
    if stat.S_ISSOCK(mode):
        return Refusal("socket", f"{name} is a socket, not a dump file", mtime)
    if stat.S_ISDIR(mode):
        return None
    if not stat.S_ISREG(mode):
        return Refusal("other", f"{name} is not a regular file", mtime)
    if st.st_nlink > 1:
        # A hard link can make a file from anywhere on the file system look like a dump.
        return Refusal(
            "hardlink", f"{name} has {st.st_nlink} hard links; only single-link files are read", mtime
        )
    return FileStat(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def outside(folder: Path, path: Path) -> str | None:
    """Why ``path`` must not be read as a file of ``folder``, or None when it is inside it.

    Refuses a ``..`` component, a parent other than the folder, and a real path (links in
    the folder's own path resolved) outside the folder's real path. Reads no file.

    >>> from pathlib import Path
    >>> outside(Path("/d"), Path("/d/../etc/shadow"))
    "/d/../etc/shadow has a '..' component"
    """
    if ".." in path.parts:
        return f"{path} has a '..' component"
    if path.parent != folder:
        return f"{path} is not directly in {folder}"
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(path)
    if os.path.dirname(real) != real_folder:
        return f"{path} resolves to {real}, outside {real_folder}"
    return None


def open_folder(folder: Path) -> int:
    """An ``O_DIRECTORY`` descriptor of ``folder`` (its own path may contain links: the
    operator configured it). Raises OSError when it is missing or not a folder."""
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dump(dir_fd: int, name: str, expect: FileStat) -> int:
    """Open ``name`` in the folder for reading, refusing anything but the file judged.

    Raises OSError (ELOOP for a link swapped in, ESTALE when the name now names another
    file or a special file).
    """
    if "/" in name or name in (".", ".."):
        raise OSError(22, f"not a plain file name: {name!r}")
    fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (expect.device, expect.inode):
            raise OSError(116, f"{name} changed between the check and the open")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def sha256_of(fd: int, stop: threading.Event | None = None) -> tuple[str, int]:
    """SHA-256 hex of the file behind ``fd`` from offset 0, and the bytes read.

    Streams ``HASH_CHUNK`` bytes at a time (constant memory). Raises HashCancelledError when
    ``stop`` is set, OSError on a read error.
    """
    h = hashlib.sha256()
    n = 0
    offset = 0
    while True:
        if stop is not None and stop.is_set():
            raise HashCancelledError
        data = os.pread(fd, HASH_CHUNK, offset)
        if not data:
            return h.hexdigest(), n
        h.update(data)
        n += len(data)
        offset += len(data)


def declared_size(fd: int) -> int | None:
    """The size the file's own header says it has, or None when it says nothing we know.

    ELF core files (OS cores, ``gcore``): the end of the furthest program segment and of the
    section header table; a shorter file is a truncated core (what gdb reports as "core
    file may be truncated"). Reads at most a few KiB. Raises OSError on a read error.
    """
    head = os.pread(fd, 64, 0)
    if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if struct.unpack_from(order + "H", head, 16)[0] != 4:  # ET_CORE only
        return None
    if wide:
        phoff, shoff = struct.unpack_from(order + "QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 54)
    else:
        phoff, shoff = struct.unpack_from(order + "II", head, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 42)
    if phnum == 0xFFFF and shoff:  # PN_XNUM: the real count is section 0's sh_info
        sec0 = os.pread(fd, shentsize, shoff)
        if len(sec0) < shentsize:
            return int(shoff + shentsize)
        phnum = struct.unpack_from(order + "I", sec0, 44 if wide else 28)[0]
    if phnum * phentsize > MAX_PHDRS_BYTES:
        return None  # a damaged header; never read gigabytes of "program headers"
    end: int = phoff + phnum * phentsize
    if shoff and shnum:
        end = max(end, shoff + shnum * shentsize)
    table = os.pread(fd, phnum * phentsize, phoff) if phnum else b""
    fmt = order + ("IIQQQQQQ" if wide else "IIIIIIII")
    for i in range(min(phnum, len(table) // max(phentsize, 1))):
        fields = struct.unpack_from(fmt, table, i * phentsize)
        offset, filesz = (fields[2], fields[5]) if wide else (fields[1], fields[4])
        if filesz:
            end = max(end, int(offset + filesz))
    return end
