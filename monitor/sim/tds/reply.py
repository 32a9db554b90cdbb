"""What a statement answers, before it is encoded into tokens: result sets, messages, shape."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.sim.tds import wire
from monitor.sim.tds.wire import Column

Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class ResultSet:
    columns: tuple[Column, ...]
    rows: list[Row]


@dataclass(frozen=True, slots=True)
class Message:
    """An informational message (severity 10): pyodbc shows it in ``cursor.messages``."""

    number: int
    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A statement's answer. ``proc``: stored-procedure shape (DONEINPROC, RETURNSTATUS, DONEPROC).

    ``database`` announces a new current database (ENVCHANGE); ``wait`` asks the server to
    wait that many seconds before answering (``waitfor delay``), watching for a cancel.
    """

    sets: tuple[ResultSet, ...] = ()
    messages: tuple[Message, ...] = ()
    proc: bool = False
    status: int = 0
    database: tuple[str, str] | None = None  # (new, old)
    wait: float = 0.0


def encode(reply: Reply, server: str) -> bytes:
    """The token stream of ``reply`` (one message; the caller frames it into packets)."""
    parts: list[bytes] = []
    if reply.database:
        parts.append(wire.envchange(1, *reply.database))
    if not reply.proc:
        parts += [wire.eed(m.number, 10, m.text, server=server) for m in reply.messages]
        for i, rs in enumerate(reply.sets):
            more = wire.DONE_MORE if i < len(reply.sets) - 1 else 0
            parts += [wire.rowfmt(rs.columns), wire.rows(rs.columns, rs.rows)]
            parts.append(wire.done(wire.DONE_COUNT | more, len(rs.rows)))
        if not reply.sets:
            parts.append(wire.done())
        return b"".join(parts)
    # Messages go first: after the rows, ODBC would report them as an extra, empty result.
    parts += [wire.eed(m.number, 10, m.text, server=server) for m in reply.messages]
    for rs in reply.sets:
        parts += [wire.rowfmt(rs.columns), wire.rows(rs.columns, rs.rows)]
        parts.append(wire.done(wire.DONE_COUNT | wire.DONE_MORE, len(rs.rows), wire.TOK_DONEINPROC))
    parts += [wire.return_status(reply.status), wire.done(wire.DONE_FINAL, 0, wire.TOK_DONEPROC)]
    return b"".join(parts)


def error(number: int, severity: int, text: str, server: str, state: int = 1) -> bytes:
    """An error message followed by DONE(error): the statement failed, the connection lives on."""
    return wire.eed(number, severity, text, state=state, server=server) + wire.done(wire.DONE_ERROR)
