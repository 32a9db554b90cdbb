"""Read a whole errorlog file (plain or gzip) through the streaming parser."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from collectors.errorlog.parser import ErrorlogParser
from monitor.errors import InputError
from monitor.events import ErrorlogRecord

CHUNK = 4 << 20


def open_errorlog(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it starts with the gzip magic. Raises OSError."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb", buffering=0)


def parse_file(path: Path, parser: ErrorlogParser | None = None) -> Iterator[ErrorlogRecord]:
    """Yield every record of an errorlog file, in order, in constant memory.

    Raises ``InputError`` when the file is missing, unreadable, a directory, or a
    corrupt gzip stream. ``parser`` (fresh by default) keeps the line counters.
    """
    p = parser or ErrorlogParser()
    try:
        with open_errorlog(path) as f:
            while chunk := f.read(CHUNK):
                yield from p.feed(chunk)
    except FileNotFoundError as e:
        raise InputError(str(path), "no such file") from e
    except IsADirectoryError as e:
        raise InputError(str(path), "is a directory, not an errorlog file") from e
    except PermissionError as e:
        raise InputError(str(path), "permission denied") from e
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(str(path), f"cannot read: {e}") from e
    yield from p.close()
