"""TDS 5.0 on the wire: packet framing, the login record, reply tokens and row encoding.

Integers are little-endian except the packet header's length (big-endian). Replies are
split into 512-byte packets (the size the login reply announces). Column types: INTN
(tinyint/smallint/int/bigint), VARCHAR (<= 255 bytes), LONGCHAR (longer text), DATETIMN
and FLTN, all nullable; a NULL is a zero length, so an empty string goes out as one space,
as ASE itself stores ``''``. Datetimes are server-local wall-clock time (no zone), with
ASE's 1/300 s resolution.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

# Packet types.
PKT_LANGUAGE = 0x01
PKT_LOGIN = 0x02
PKT_REPLY = 0x04
PKT_CANCEL = 0x06
PKT_NORMAL = 0x0F
STATUS_EOM = 0x01
PACKET_SIZE = 512
HEADER = struct.Struct(">BBHHBB")

# Tokens.
TOK_LANGUAGE = 0x21
TOK_LOGOUT = 0x71
TOK_RETURNSTATUS = 0x79
TOK_LOGINACK = 0xAD
TOK_ROW = 0xD1
TOK_CAPABILITY = 0xE2
TOK_ENVCHANGE = 0xE3
TOK_EED = 0xE5
TOK_DBRPC = 0xE6
TOK_DYNAMIC = 0xE7
TOK_ROWFMT = 0xEE
TOK_DONE = 0xFD
TOK_DONEPROC = 0xFE
TOK_DONEINPROC = 0xFF

# DONE status bits.
DONE_FINAL = 0x00
DONE_MORE = 0x01
DONE_ERROR = 0x02
DONE_COUNT = 0x10
DONE_ATTN = 0x20

# Column data types.
INTN = 0x26
VARCHAR = 0x27
FLTN = 0x6D
DATETIMN = 0x6F
LONGCHAR = 0xAF
NULLABLE = 0x20

# The capability token of the login reply: the request/response capability bit masks that make
# FreeTDS 1.3 use plain ROWFMT/ROW tokens and the types above (from research/odbc-testing.md).
CAPABILITY = bytes.fromhex("e2 12 00 01 07 07 61 41 cf ff ff e6 02 07 00 00 02 00 00 00 00")

_DONE = struct.Struct("<BHHi")
_EPOCH = date(1900, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class Column:
    """A result column: ``type`` is an ASE type name (tinyint, smallint, int, bigint, varchar,
    datetime, float); ``length`` the declared byte length (varchar) or storage size."""

    name: str
    type: str
    length: int

    @property
    def type_id(self) -> int:
        """The ASE type id (``monTableColumns.TypeID``)."""
        return _TYPE_IDS[self.type]


_TYPE_IDS = {
    "tinyint": 48,
    "smallint": 52,
    "int": 56,
    "bigint": 191,
    "varchar": 39,
    "datetime": 61,
    "float": 62,
}


def I1(name: str) -> Column:  # noqa: N802 - type constructors read like the SQL types they stand for
    """A tinyint column."""
    return Column(name, "tinyint", 1)


def I2(name: str) -> Column:  # noqa: N802
    """A smallint column."""
    return Column(name, "smallint", 2)


def I4(name: str) -> Column:  # noqa: N802
    """An int column."""
    return Column(name, "int", 4)


def I8(name: str) -> Column:  # noqa: N802
    """A bigint column."""
    return Column(name, "bigint", 8)


def VC(name: str, length: int) -> Column:  # noqa: N802
    """A varchar(length) column (LONGCHAR on the wire above 255 bytes)."""
    return Column(name, "varchar", length)


def DT(name: str) -> Column:  # noqa: N802
    """A datetime column (POSIX seconds or naive local datetimes as values)."""
    return Column(name, "datetime", 8)


def FL(name: str) -> Column:  # noqa: N802
    """A float (8-byte) column."""
    return Column(name, "float", 8)


# ----------------------------------------------------------------------------- packets


def frame(payload: bytes, ptype: int = PKT_REPLY, size: int = PACKET_SIZE) -> bytes:
    """Split a message into packets of at most ``size`` bytes (header included)."""
    body = size - HEADER.size
    parts = []
    n = len(payload)
    for off in range(0, max(n, 1), body):
        chunk = payload[off : off + body]
        last = off + body >= n
        parts.append(HEADER.pack(ptype, STATUS_EOM if last else 0, len(chunk) + HEADER.size, 0, 0, 0))
        parts.append(chunk)
    return b"".join(parts)


# ----------------------------------------------------------------------------- login record


@dataclass(frozen=True, slots=True)
class Login:
    """The fields of a TDS 5.0 login record the server uses (the password never leaves here)."""

    host: str
    user: str
    password: str = field(repr=False)
    host_process: str
    app: str
    server: str
    program: str
    tds_version: bytes


def _field(data: bytes, offset: int, size: int) -> str:
    if len(data) < offset + size + 1:
        return ""
    n = min(data[offset + size], size)
    return data[offset : offset + n].decode("utf-8", "replace")


def parse_login(data: bytes) -> Login:
    """Decode the fixed-layout login record (30-byte strings, each followed by its length).

    Raises ``ValueError`` if ``data`` is too short to be a login record.
    """
    if len(data) < 480:
        raise ValueError(f"login record too short ({len(data)} bytes)")
    return Login(
        host=_field(data, 0, 30),
        user=_field(data, 31, 30),
        password=_field(data, 62, 30),
        host_process=_field(data, 93, 30),
        app=_field(data, 140, 30),
        server=_field(data, 171, 30),
        program=_field(data, 462, 10),
        tds_version=bytes(data[458:462]),
    )


# ----------------------------------------------------------------------------- tokens


def done(status: int = DONE_FINAL, count: int = 0, token: int = TOK_DONE) -> bytes:
    """A DONE / DONEPROC / DONEINPROC token."""
    return _DONE.pack(token, status, 0, count)


def return_status(value: int) -> bytes:
    """A RETURNSTATUS token (a procedure's return value)."""
    return struct.pack("<Bi", TOK_RETURNSTATUS, value)


def _b1(text: str, limit: int = 255) -> bytes:
    raw = text.encode("utf-8")[:limit]
    return bytes((len(raw),)) + raw


def envchange(kind: int, new: str, old: str = "") -> bytes:
    """An ENVCHANGE token: 1 = database, 2 = language, 3 = charset, 4 = packet size."""
    body = bytes((kind,)) + _b1(new) + _b1(old)
    return struct.pack("<BH", TOK_ENVCHANGE, len(body)) + body


def loginack(ok: bool, program: str = "sql server", version: bytes = b"\x10\x00\x04\x03") -> bytes:
    """A LOGINACK token: status 5 (accepted) or 6 (refused), TDS 5.0, the server program name."""
    body = bytes((5 if ok else 6,)) + b"\x05\x00\x00\x00" + _b1(program) + version
    return struct.pack("<BH", TOK_LOGINACK, len(body)) + body


def eed(
    number: int,
    severity: int,
    message: str,
    *,
    state: int = 1,
    server: str = "",
    proc: str = "",
    line: int = 1,
) -> bytes:
    """An EED (message) token. Severity > 10 is an error; FreeTDS derives the SQLSTATE from ``number``."""
    msg = message.encode("utf-8")[:1024]
    body = (
        struct.pack("<iBB", number, state, severity)
        + b"\x05ZZZZZ"  # SQLSTATE, ignored by FreeTDS (it maps the message number)
        + b"\x00"  # no extended parameters follow
        + struct.pack("<HH", 0, len(msg))
        + msg
        + _b1(server)
        + _b1(proc)
        + struct.pack("<H", line)
    )
    return struct.pack("<BH", TOK_EED, len(body)) + body


def rowfmt(columns: Sequence[Column]) -> bytes:
    """A ROWFMT token describing ``columns`` (all nullable)."""
    parts = [struct.pack("<H", len(columns))]
    for c in columns:
        parts.append(_b1(c.name))
        parts.append(bytes((NULLABLE,)) + b"\x00\x00\x00\x00")
        if c.type == "varchar" and c.length > 255:
            parts.append(struct.pack("<BI", LONGCHAR, c.length))
        elif c.type == "varchar":
            parts.append(bytes((VARCHAR, max(1, c.length))))
        elif c.type == "datetime":
            parts.append(bytes((DATETIMN, 8)))
        elif c.type == "float":
            parts.append(bytes((FLTN, 8)))
        else:
            parts.append(bytes((INTN, c.length)))
        parts.append(b"\x00")  # no locale information
    body = b"".join(parts)
    return struct.pack("<BH", TOK_ROWFMT, len(body)) + body


# ----------------------------------------------------------------------------- values

Encoder = Callable[[object], bytes]
_NULL1 = b"\x00"
_NULL4 = b"\x00\x00\x00\x00"


_UNIX_DAY = date(1970, 1, 1).toordinal() - _EPOCH  # 25567: 1970-01-01 in days since 1900-01-01
_offsets: dict[int, int] = {}  # quarter-hour -> UTC offset in seconds (time zones change on quarter hours)


def _utc_offset(t: float) -> int:
    key = int(t // 900)
    off = _offsets.get(key)
    if off is None:
        if len(_offsets) > 4096:
            _offsets.clear()
        off = _offsets[key] = time.localtime(t).tm_gmtoff
    return off


def datetime_parts(value: float | datetime) -> tuple[int, int]:
    """(days since 1900-01-01, 1/300 s since midnight) of a POSIX time (as local time) or naive datetime.

    >>> datetime_parts(datetime(1900, 1, 2, 0, 0, 1))
    (1, 300)
    """
    if isinstance(value, datetime):
        days = value.toordinal() - _EPOCH
        seconds = (value.hour * 60 + value.minute) * 60 + value.second + value.microsecond / 1e6
    else:
        local = value + _utc_offset(value)
        days = int(local // 86400) + _UNIX_DAY
        seconds = local % 86400
    ticks = round(seconds * 300)
    if ticks >= 300 * 86400:  # rounded up into the next day
        days, ticks = days + 1, 0
    return days, ticks


def _int_encoder(size: int) -> Encoder:
    packer = struct.Struct({1: "<BB", 2: "<Bh", 4: "<Bi", 8: "<Bq"}[size]).pack

    def enc(v: object) -> bytes:
        if v is None:
            return _NULL1
        return packer(size, v)

    return enc


def _varchar_encoder(limit: int) -> Encoder:
    def enc(v: object) -> bytes:
        if v is None:
            return _NULL1
        raw = (v if isinstance(v, str) else str(v)).encode("utf-8") or b" "
        if len(raw) > limit:
            raw = raw[:limit].decode("utf-8", "ignore").encode("utf-8") or b" "
        return bytes((len(raw),)) + raw

    return enc


def _long_encoder(limit: int) -> Encoder:
    def enc(v: object) -> bytes:
        if v is None:
            return _NULL4
        raw = (v if isinstance(v, str) else str(v)).encode("utf-8")[:limit] or b" "
        return struct.pack("<I", len(raw)) + raw

    return enc


_DT = struct.Struct("<BiI").pack
_FL = struct.Struct("<Bd").pack


def _datetime(v: object) -> bytes:
    if v is None:
        return _NULL1
    days, ticks = datetime_parts(v if isinstance(v, datetime) else float(v))  # type: ignore[arg-type]
    return _DT(8, days, ticks)


def _float(v: object) -> bytes:
    return _NULL1 if v is None else _FL(8, float(v))  # type: ignore[arg-type]


def encoder(column: Column) -> Encoder:
    """The function that encodes one value of ``column`` (``None`` = NULL) for a ROW token."""
    if column.type == "varchar":
        limit = max(1, column.length)
        return _long_encoder(limit) if limit > 255 else _varchar_encoder(limit)
    if column.type == "datetime":
        return _datetime
    if column.type == "float":
        return _float
    return _int_encoder(column.length)


def rows(columns: Sequence[Column], values: Iterable[Sequence[object]]) -> bytes:
    """ROW tokens for ``values`` (each a sequence in column order)."""
    encs = [encoder(c) for c in columns]
    out = bytearray()
    row = bytes((TOK_ROW,))
    for value in values:
        out += row
        for enc, v in zip(encs, value, strict=True):
            out += enc(v)
    return bytes(out)
