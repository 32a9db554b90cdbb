"""One linear pass over a chunk of errorlog bytes: which lines must be read, which can be counted.

Almost every errorlog line is routine and only counted. The lines the parser must read
are the few whose message starts with a marker (``Error: 1105``, ``Current process …
infected``, ``pc: ``, boot and shutdown lines, …) and every line that does not look
like a prefixed line at all (junk, continuation lines, blank lines, an unknown layout).

The pass is vectorised (numpy) so that its cost depends on the chunk's size and line
count only, never on what the log holds: one ``== b"\\n"``, one gather of the first
:data:`HEAD` bytes of every line, then column compares. The prefix layout is checked at
fixed offsets for each of the widths ASE writes (``instance:thread:family:spid`` and
the older 3-field forms, 2 to 4 digits of engine/thread), so a log may mix layouts
and separators (one space, two, a TAB, several spaces) without changing the speed:
lines whose separator is longer than two characters (the register dump of a crash
block) are simply handed to the parser to read.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

#: Bytes of each line the pass looks at: the longest prefix (43 bytes), the component
#: (6), a separator of up to 2 and the marker's first 8 bytes.
HEAD = 59

# A marker must start the message; these are their first four bytes (the parser's
# classification decides what a line is; this only says "read it").
MARKER_RE = re.compile(
    rb"(?:Error: \d|The configuration option|[Cc]urrent process|timeslice -?\d|pc: |Using config area"
    rb"|Adaptive Server Enterprise|SySAM: Using|Shutdown started|ASE shutdown|ueshutdown"
    rb"|Main thread performing final|FATAL UNHANDLED|end of stack trace)"
)
#: The same markers for decoded text: the parser acts on a line only when this matches its
#: message, so a line the scan passes over could never have made a record (any split of the
#: input then gives the same records, wherever a line falls in a chunk).
MARKER_TEXT_RE = re.compile(MARKER_RE.pattern.decode("ascii"))
# Their first eight bytes ("pc: " only four): a line is read when its message starts so.
_MARKER_HEADS = (
    b"Error: ", b"The conf", b"Current ", b"current ", b"timeslic", b"Using co", b"Adaptive",
    b"SySAM: U", b"Shutdown", b"ASE shut", b"ueshutdo", b"Main thr", b"FATAL UN", b"end of s",
)  # fmt: skip
_HEAD_CODES = np.array(
    sorted(int.from_bytes(h.ljust(8, b"\0")[:8], "little") for h in _MARKER_HEADS), dtype=np.uint64
)
_ERROR_MASK = np.uint64((1 << 56) - 1)  # "Error: " is seven bytes; the digit is checked by the regex
_ERROR_CODE = np.uint64(int.from_bytes(b"Error: ", "little"))
_PC_MASK = np.uint64((1 << 32) - 1)
_PC_CODE = np.uint64(int.from_bytes(b"pc: ", "little"))

# Widths of the fields before the date: ``(?:dd:)?d{2,4}:ddddd:ddddd:``.
_WIDTHS = (20, 17, 19, 18, 16, 15)
_DATE = 23  # "YYYY/MM/DD HH:MM:SS.hh "
_COLON, _SLASH, _SPACE, _DOT, _TAB, _NL = ord(":"), ord("/"), ord(" "), ord("."), ord("\t"), ord("\n")


class Scan:
    """The result of :func:`scan_lines` for ``buf[:end]``.

    ``lines`` is the number of lines; ``starts``/``ends`` are the offsets of the lines the
    parser must read (``ends`` at the newline), ascending; ``examined`` is the number of
    bytes the pass looked at (for the linearity guard).
    """

    __slots__ = ("ends", "examined", "lines", "starts")

    def __init__(self, lines: int, starts: list[int], ends: list[int], examined: int) -> None:
        self.lines = lines
        self.starts = starts
        self.ends = ends
        self.examined = examined


def scan_lines(buf: bytes, end: int, start: int = 0) -> Scan:
    """Find the lines of ``buf[start:end]`` (``end`` just past a newline) the parser must
    read; offsets in the result are offsets in ``buf``.

    Pure; never raises for any bytes. Cost: linear in ``end - start`` plus :data:`HEAD`
    bytes a line.
    """
    size = end - start
    a = np.frombuffer(buf, dtype=np.uint8, count=size, offset=start)
    ends = np.flatnonzero(a == _NL)
    n = len(ends)
    starts = np.empty(n, dtype=np.int64)
    if n:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    # Lines too close to the end of the buffer for a full head are read one by one.
    idx = np.flatnonzero(starts <= size - HEAD)
    need = np.ones(n, dtype=bool)
    if len(idx):
        heads = np.lib.stride_tricks.sliding_window_view(a, HEAD)[starts[idx]]
        unknown, marker, msg = _classify_heads(heads, (ends - starts)[idx])
        need[idx] = unknown
        # A marker head ("Error: ", "Adaptive", ...) is confirmed on the bytes: "Error: x" or
        # "Adaptive Server cannot ..." is routine. These are few, so a regex match each is cheap.
        for i, m in zip(idx[marker].tolist(), msg[marker].tolist(), strict=True):
            if MARKER_RE.match(buf, start + int(starts[i]) + m):
                need[i] = True
    read = np.flatnonzero(need)
    rs, re_ = starts[read], ends[read]
    examined = size + HEAD * len(idx) + int((re_ - rs).sum())
    return Scan(n, (rs + start).tolist(), (re_ + start).tolist(), examined)


def _classify_heads(
    h: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Per line head: (not a well-formed prefixed line, its message starts with a marker head,
    the message's offset in the line). Column compares only: each is one pass over the rows."""
    n = len(h)
    msg = np.full(n, -1, dtype=np.int64)  # offset of the message in the line, -1 = unknown
    code = np.zeros(n, dtype=np.uint64)  # the message's first eight bytes, little-endian
    rest = np.arange(n)
    for w in _WIDTHS:
        sub = h if len(rest) == n else h[rest]
        col = sub.T  # col[k] is byte k of every row
        ok = (col[w - 1] == _COLON) & (col[w - 7] == _COLON) & (col[w - 13] == _COLON)
        ok &= (col[w + 4] == _SLASH) & (col[w + 7] == _SLASH) & (col[w + 10] == _SPACE)
        ok &= (col[w + 13] == _COLON) & (col[w + 16] == _COLON) & (col[w + 19] == _DOT)
        ok &= (col[w + 22] == _SPACE) & _is_digit(col[0]) & _is_digit(col[1])
        if not ok.any():
            continue
        c = w + _DATE  # "kernel" / "server": same bytes at 1, 2 and 4
        ok &= (col[c + 1] == ord("e")) & (col[c + 2] == ord("r")) & (col[c + 4] == ord("e"))
        k = (col[c] == ord("k")) & (col[c + 3] == ord("n")) & (col[c + 5] == ord("l"))
        s = (col[c] == ord("s")) & (col[c + 3] == ord("v")) & (col[c + 5] == ord("r"))
        ok &= k | s
        ws0, ws1, ws2 = (_is_blank(col[c + j]) for j in (6, 7, 8))
        ok &= ws0
        for m, sel in ((c + 7, ok & ~ws1), (c + 8, ok & ws1 & ~ws2)):
            rows = rest[sel]
            msg[rows] = m
            # The eight bytes at offset m of every row, read in place (rows are HEAD bytes apart).
            at_m = np.ndarray((n,), dtype="<u8", buffer=h, offset=m, strides=(HEAD,))
            code[rows] = at_m[rows]
        rest = rest[msg[rest] < 0]
        if not len(rest):
            break
    unknown = (msg < 0) | (lengths < msg)  # a prefix cut short is not a well-formed line
    marker = np.isin(code, _HEAD_CODES) | ((code & _ERROR_MASK) == _ERROR_CODE)
    marker |= (code & _PC_MASK) == _PC_CODE
    marker &= ~unknown
    return unknown, marker, msg


def _is_digit(col: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return (col >= ord("0")) & (col <= ord("9"))


def _is_blank(col: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    blank: npt.NDArray[np.bool_] = (col == _SPACE) | (col == _TAB)
    return blank
