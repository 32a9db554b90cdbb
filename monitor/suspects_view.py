"""The ranked suspects of one crash group as a table (``asewatch suspects``, ``show``, the demo)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table


def suspects_table(group: Mapping[str, Any], *, limit: int = 10, title: str | None = None) -> Table:
    """``group`` is one element of ``suspects_json(...)["groups"]``; the best ``limit`` rows."""
    head = title or (
        f"Suspects of crash group {group.get('signature')} "
        f"({group.get('crashes')} crashes, {group.get('first')} to {group.get('last')})"
    )
    t = Table(title=head)
    for col in ("rank", "kind", "name", "score", "confidence", "evidence"):
        t.add_column(col, overflow="fold")
    for s in list(group.get("suspects", ()))[:limit]:
        t.add_row(
            str(s["rank"]), str(s["kind"]), str(s["name"]), f"{float(s['score']):.2f}", str(s["confidence"]),
            str(s["evidence"]),
        )  # fmt: skip
    notes = [str(n) for n in group.get("notes", ())]
    if notes:
        t.caption = "; ".join(notes)
    return t
