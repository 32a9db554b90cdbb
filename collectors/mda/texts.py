"""SQL text and call stacks of one read, as rows: pieces joined, text redacted, frames ordered.

A :class:`TextJoiner` belongs to one connection: ``monSysSQLText`` splits a batch into
255-character rows and a read can come between two of them, so the newest batch of each
spid is kept (raw, for one interval only) to be finished by the next read; and the batch
a spid is running (``monProcessSQLText``) is passed on only when it changed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from collectors.mda import queries
from collectors.mda.rows import SqlTextRow, StackFrameRow
from collectors.mda.shape import shape

Row = Sequence[Any]
TextKey = tuple[int, int, int]
_TEXT_COLUMNS = ("SPID", "KPID", "BatchID", "SequenceInBatch", "SQLText")


def picker(pos: Mapping[str, int], columns: Sequence[str]) -> Callable[[Row], tuple[Any, ...]]:
    """A function giving ``columns`` of a row in order (None for a column the server lacks);
    an ``itemgetter`` (C speed) when the server has them all."""
    idx = [pos.get(c) for c in columns]
    if all(i is not None for i in idx):
        return operator.itemgetter(*idx)
    return lambda r: tuple(None if i is None else r[i] for i in idx)


def as_int(value: object) -> int | None:
    """``value`` as an int, or None when it is not a number."""
    return int(value) if isinstance(value, int | float) else None


def as_str(value: object) -> str | None:
    """``value`` stripped, or None when it is None or blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class TextJoiner:
    """Turns text rows into redacted :class:`SqlTextRow`s; ``own`` is the sampler's spid."""

    def __init__(self) -> None:
        self._fragments: dict[TextKey, list[tuple[int, str]]] = {}
        self._process_texts: dict[TextKey, str] = {}

    def pipe(self, rows: list[Row], pos: Mapping[str, int], own: int | None, now: float) -> list[SqlTextRow]:
        """Join each batch's pieces (by SequenceInBatch) and redact. A batch whose pieces
        straddle two reads is completed from the previous read's pieces, so a literal
        split across the 255-character boundary is still redacted whole."""
        if not rows and not self._fragments:
            return []
        pick = picker(pos, _TEXT_COLUMNS)
        pieces: dict[TextKey, list[tuple[int, str]]] = {}
        for spid, kpid, batch, seq, piece in map(pick, rows):
            if spid == own or spid is None or kpid is None or batch is None:
                continue
            key = (spid, kpid, batch)
            got = pieces.get(key)
            if got is None:
                pieces[key] = [(seq or 0, piece or "")]
            else:
                got.append((seq or 0, piece or ""))
        out: list[SqlTextRow] = []
        append = out.append
        before = self._fragments
        for key, got in pieces.items():
            earlier = before.get(key) if before else None
            if earlier is None and len(got) == 1:
                raw = got[0][1]
            else:
                raw = "".join(t for _, t in sorted(set(got + (earlier or []))))
            append(SqlTextRow(key[0], key[1], key[2], shape(raw), "pipe", now))
        # Only a spid's newest batch can be cut by the read; its raw pieces are held until
        # the next read (one interval), to finish it.
        newest = {key[0]: key for key in pieces}
        self._fragments = {key: pieces[key] for key in newest.values()}
        return out

    def process(
        self, rows: list[Row], pos: Mapping[str, int], own: int | None, now: float
    ) -> list[SqlTextRow]:
        """The batches spids are running now (pieces by line, lines joined), when changed."""
        lines: dict[TextKey, list[tuple[int, int, str]]] = {}
        for r in rows:
            spid, kpid, batch = r[pos["SPID"]], r[pos["KPID"]], r[pos["BatchID"]]
            if spid is None or spid == own or kpid is None or batch is None:
                continue
            key = (int(spid), int(kpid), int(batch))
            line = as_int(queries.value(r, pos, "LineNumber")) or 0
            seq = as_int(queries.value(r, pos, "SequenceInLine")) or 0
            lines.setdefault(key, []).append((line, seq, str(r[pos["SQLText"]] or "")))
        out = []
        seen: dict[TextKey, str] = {}
        for key, parts in lines.items():
            parts.sort()
            by_line: dict[int, str] = {}
            for line, _, piece in parts:
                by_line[line] = by_line.get(line, "") + piece
            text = shape("\n".join(by_line[n] for n in sorted(by_line)))
            seen[key] = text
            if self._process_texts.get(key) != text:  # unchanged since the last sample: nothing new
                out.append(SqlTextRow(*key, text=text, source="process", seen_at=now))
        self._process_texts = seen
        return out


def stack(rows: list[Row], p: Mapping[str, int], own: int | None) -> list[StackFrameRow]:
    """Each spid's procedure call stack, outermost first (by ContextID); ``own`` left out."""
    v = queries.value
    frames: dict[tuple[int, int], list[Row]] = {}
    for r in rows:
        spid, kpid = as_int(r[p["SPID"]]), as_int(r[p["KPID"]])
        if spid is not None and spid != own and kpid is not None:
            frames.setdefault((spid, kpid), []).append(r)
    out = []
    for (spid, kpid), group in frames.items():
        group.sort(key=lambda r: as_int(v(r, p, "ContextID")) or 0)
        for level, r in enumerate(group):
            out.append(
                StackFrameRow(
                    spid=spid,
                    kpid=kpid,
                    level=level,
                    context_id=as_int(v(r, p, "ContextID")) or 0,
                    db=as_str(v(r, p, "DBName")),
                    owner=as_str(v(r, p, "OwnerName")),
                    name=as_str(v(r, p, "ObjectName")),
                    object_type=as_str(v(r, p, "ObjectType")),
                    line=as_int(v(r, p, "LineNumber")),
                    statement_number=as_int(v(r, p, "StatementNumber")),
                )
            )
    return out
