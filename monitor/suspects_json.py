"""The public JSON of ``asewatch suspects --json`` (and ``suspects.json`` in the vendor package).

Keys may be added, none removed (the README documents the shape).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from monitor.suspects import SuspectGroup


def _plain(value: object) -> object:
    """JSON-safe: inf -> "∞", nan -> None, floats to 6 significant digits, numpy -> Python, times ISO."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return ("∞" if value > 0 else "-∞") if math.isinf(value) else float(f"{value:.6g}")
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def suspects_json(groups: Sequence[SuspectGroup]) -> dict[str, object]:
    """The public JSON object: ``{"groups": [{signature, crashes, first, last, notes, suspects}]}``.

    Times ISO 8601 without a zone; scores rounded to 3 decimals; ``detail`` JSON-safe.
    """
    return {"groups": [{
        "signature": g.signature, "crashes": g.crashes, "first": _plain(g.first), "last": _plain(g.last),
        "notes": list(g.notes),
        "suspects": [{"rank": s.rank, "kind": s.kind, "name": s.name, "score": round(float(s.score), 3),
                      "confidence": s.confidence, "evidence": s.evidence, "detail": _plain(s.detail)}
                     for s in g.suspects]} for g in groups]}  # fmt: skip
