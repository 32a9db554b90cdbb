"""One errorlog line: its prefix, its text, and the fields ASE writes in crash blocks.

The prefix is ``instance:thread:family:spid date time component`` (15.7 and later),
or the older ``engine:family:spid date time component`` (12.5/15.0) and
``instance:engine:family:spid`` with a two-digit engine (15.x process mode).
One or more spaces or a TAB follow ``kernel``/``server``. Lines may carry junk
before the prefix; lines without a prefix continue the record above them.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import NamedTuple

PREFIX_RE = re.compile(
    r"(?:(\d{2}):)?(\d{2,4}):(\d{5}):(\d{5}):(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{2}) "
    r"(kernel|server)[ \t]+"
)


@functools.lru_cache(maxsize=4096)
def _time(stamp: str) -> datetime | None:
    """``YYYY/MM/DD HH:MM:SS.hh`` as a datetime; cached because bursts of lines share a stamp."""
    try:
        return datetime(
            int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]),
            int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19]), int(stamp[20:22]) * 10000,
        )  # fmt: skip
    except ValueError:
        return None


class Line(NamedTuple):
    """A prefixed errorlog line. ``engine`` is known only for process-mode prefixes.

    A named tuple, not a dataclass: the parser builds one for every line it reads, and
    this is the cheapest immutable record Python has.
    """

    time: datetime
    thread: int
    engine: int | None
    family: int
    spid: int
    component: str
    text: str
    offset: int

    @property
    def task(self) -> tuple[int, int]:
        """The task that wrote the line: (family, spid). Crash blocks are grouped by it."""
        return (self.family, self.spid)


def decode(raw: bytes) -> str:
    """Decode one line: UTF-8, else cp1252 (Swedish logins and hosts); never raises.

    >>> decode("vårdcentral".encode("utf-8"))
    'vårdcentral'
    >>> decode("vårdcentral".encode("cp1252"))
    'vårdcentral'
    >>> decode(b"\\x81\\xff")
    '\\ufffdÿ'
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def parse_line(text: str, offset: int) -> Line | None:
    """Parse a decoded line (without its newline); ``None`` when it carries no prefix.

    Junk before the prefix is skipped.

    >>> ln = parse_line("00:0004:00000:00308:2018/05/04 19:37:01.48 kernel  end of stack trace", 0)
    >>> (ln.thread, ln.engine, ln.family, ln.spid, ln.time.isoformat(), ln.text)
    (4, None, 0, 308, '2018-05-04T19:37:01.480000', 'end of stack trace')
    >>> parse_line("11:00000:04104:2008/12/02 17:28:07.38 server\\tError: 1105", 0).engine
    11
    >>> parse_line("garbage>>00:00:00000:00007:2011/10/25 08:07:46.74 kernel x", 0).spid
    7
    >>> parse_line("no prefix here", 0) is None
    True
    """
    m = PREFIX_RE.match(text)
    if m is None:
        m = PREFIX_RE.search(text)
        if m is None:
            return None
    inst, eng, fam, spid, stamp, comp = m.group(1, 2, 3, 4, 5, 6)
    time = _time(stamp)
    if time is None:
        return None
    # A 4-digit field is an OS thread in threaded mode (15.7+); the 3-field and the
    # 2-digit forms are process mode, where the field is the engine number.
    engine = int(eng) if (inst is None or len(eng) == 2) else None
    body = text[m.end() :].rstrip("\r")
    return Line(time, int(eng), engine, int(fam), int(spid), comp, body, offset)


# --------------------------------------------------------------------------- crash-block fields

SIGNAL_RE = re.compile(r"infected with (?:signal )?(\d+)", re.IGNORECASE)
TIMESLICE_RE = re.compile(r"^timeslice -?\d+, current process infected at \S+ \(([^)]*)\)")
ADDRESS_RE = re.compile(r"^Address \S+ \(([^)]*)\)")
ENGINE_RE = re.compile(r"^Current Process is running on Engine (\d+)", re.IGNORECASE)
STMT_RE = re.compile(r"^Current statement number: (-?\d+) Current line number: (-?\d+)")
CURDB_RE = re.compile(r"^curdb = (-?\d+)")
LASTERROR_RE = re.compile(r"^lasterror = (-?\d+) preverror = -?\d+ transtate = (-?\d+)")
CURCMD_RE = re.compile(r"^curcmd = (-?\d+) program =(.*)$")
EXTENDED_RE = re.compile(r"^extended error information: hostname:(.*?) login:(.*)$")
FRAME_RE = re.compile(r"^pc: 0x[0-9a-fA-F]+\s+(.*)$")
HANDLER_RE = re.compile(r"^\[Handler pc: \S+ (\S+) installed by")
END_RE = re.compile(r"^end of stack trace, spid (\d+), kpid (-?\d+), suid (-?\d+)")
ERROR_RE = re.compile(r"^Error: (\d+), Severity: (\d+), State: (\d+)")
CONFIG_RE = re.compile(
    r"^The configuration option '(.*)' has been changed by '(.*)' from '(.*)' to '(.*)'\.\s*$"
)
SHUTDOWN_BY_RE = re.compile(r"^Shutdown started by user '([^']*)'\.(?: SQL text: (.*))?")
VERSION_RE = re.compile(r"^(Adaptive Server Enterprise/\d.*?)\s*$")
EXEC_RE = re.compile(
    r"^\s*exec(?:ute)?\s+(?:@\w+\s*=\s*)?((?:\[?[\w#$@]+\]?\.){0,2}\[?[\w#$@]+\]?)", re.IGNORECASE
)
_OFFSET_RE = re.compile(r"\+0x[0-9a-fA-F]+.*$")


def function_name(text: str) -> str | None:
    """A frame's function with address, offset and argument list removed.

    >>> function_name("pcstkwalk+0x46e()")
    'pcstkwalk'
    >>> function_name("LeEvals::LeEvRun(LeRunMode, LeRunStack*, short)+0x4d()")
    'LeEvals::LeEvRun'
    >>> function_name("query_text+0x1dd")
    'query_text'
    >>> function_name("(null)+0x7fd9701ba5d0()") is None
    True
    >>> function_name("") is None
    True
    """
    name = _OFFSET_RE.sub("", text.strip())
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            if name[i] == ")":
                depth += 1
            elif name[i] == "(":
                depth -= 1
                if depth == 0:
                    name = name[:i]
                    break
    name = name.strip()
    if not name or name in ("(null)", "??") or name.startswith("0x"):
        return None
    return name


def exec_procedure(sql: str | None) -> str | None:
    """The procedure an ``exec``/``execute`` call names, without database and owner.

    >>> exec_procedure("exec sp_showplan 86, null, null, null, 'long'")
    'sp_showplan'
    >>> exec_procedure("EXECUTE @rc = clinic.dbo.p_brev_sok @pnr = '19121212-1212'")
    'p_brev_sok'
    >>> exec_procedure("update brev set x = 1") is None
    True
    """
    if not sql:
        return None
    m = EXEC_RE.match(sql)
    if m is None:
        return None
    return m.group(1).rsplit(".", 1)[-1].strip("[]") or None


def blank_to_none(value: str) -> str | None:
    """Trimmed text, or ``None`` when ASE left the field empty."""
    value = value.strip()
    return value or None
