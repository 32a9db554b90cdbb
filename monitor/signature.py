"""Crash signatures: a short stable hash that groups repeats of the same bug.

The rule, version 1 (``SIGNATURE_VERSION``):

1. Take the crash kind (``signal``, ``timeslice`` or ``other``) and the signal number
   (empty for timeslice and other).
2. Take the frames of the first stack trace in the crash block, innermost first,
   as function names: addresses, ``+0x…`` offsets and C++ argument lists removed.
3. Drop the signal/termination machinery — the stack walker, the signal and
   termination handlers that every crash passes through (``MACHINERY``) — and
   unresolved frames (``(null)``, ``()``, bare addresses).
4. Keep the first ``TOP_FRAMES`` (5) frames that remain. When none remain (a
   truncated block), use the faulting function from the ``Address`` line instead.
5. The signature is the first 16 hex digits of SHA-256 over
   ``"asewatch-signature-v1"``, the kind, the signal and those names, one per line.

So the same bug at other addresses, offsets, spids, kpids, times, servers or EBF
builds (function names are stable across builds) gets the same signature, and a
crash with different top frames gets a different one. ``[Handler pc: …]`` lines
never count. Changing any step changes ``SIGNATURE_VERSION``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

SIGNATURE_VERSION = 1
TOP_FRAMES = 5

#: The stack walker, signal and termination handlers at the top of every ASE crash stack.
MACHINERY = frozenset(
    {
        "pcstkwalk",
        "ucstkgentrace",
        "ucbacktrace",
        "terminate_process",
        "kisignal",
        "kitermproc",
        "kepanic",
    }
)
# Their kin: other helpers of the stack-trace writer (ucstk*) and signal entry points.
_MACHINERY_RE = re.compile(r"^(?:ucstk\w*|kisignal\w*|__restore_rt|_sigtramp|__sighandler)$")


def is_machinery(frame: str) -> bool:
    """Whether a frame belongs to the signal/termination machinery.

    >>> is_machinery("kisignal"), is_machinery("ucstkgentrace"), is_machinery("LeRun")
    (True, True, False)
    """
    return frame in MACHINERY or _MACHINERY_RE.match(frame) is not None


def meaningful_frames(frames: Iterable[str], limit: int = TOP_FRAMES) -> tuple[str, ...]:
    """The first ``limit`` frames that are neither machinery nor unresolved.

    >>> meaningful_frames(["pcstkwalk", "kisignal", "(null)", "query_text", "LeRun"])
    ('query_text', 'LeRun')
    """
    out: list[str] = []
    for frame in frames:
        if frame == "(null)" or is_machinery(frame):
            continue
        out.append(frame)
        if len(out) == limit:
            break
    return tuple(out)


def crash_signature(
    kind: str, signal: int | None, frames: Sequence[str], address_function: str | None
) -> str:
    """The version-1 signature of a crash (see the module docstring for the rule).

    >>> a = crash_signature("signal", 11, ["pcstkwalk", "kisignal", "query_text", "LeRun"], None)
    >>> b = crash_signature("signal", 11, ["ucbacktrace", "query_text", "LeRun"], "query_text")
    >>> a == b, len(a)
    (True, 16)
    >>> a == crash_signature("signal", 10, ["query_text", "LeRun"], None)
    False
    """
    top = meaningful_frames(frames)
    if not top and address_function:
        top = (address_function,)
    text = "\n".join(["asewatch-signature-v1", kind, "" if signal is None else str(signal), *top])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
