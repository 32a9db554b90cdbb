"""Idempotency keys for events: a short digest of the fields that identify a fact."""

from __future__ import annotations

import hashlib


def digest(*parts: object) -> str:
    """16 hex digits of SHA-256 over the parts (``None`` as empty).

    >>> digest("a", 1) == digest("a", 1), digest("a", 1) == digest("a", 2)
    (True, False)
    """
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
