"""The demo's ranked suspects and the part of its verdict that rests on them.

The incident is built so that the answer must be earned (monitor/sim/incident.toml): the
crashing statement is inside the procedure, a frequent innocent procedure runs before
every crash, a nightly batch runs near some of them, an innocent flag is switched on the
same morning, and the culprit is called rarely. The verdict wants the culprit procedure
first among procedures, and the parallelism setting and the culprit flag above every
other flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monitor.demo_report import FLAG, PROCEDURE, Outcome

SETTING = "max parallel degree"


def _rank(suspects: Sequence[Mapping[str, Any]], kind: str, name: str) -> int | None:
    return next((int(s["rank"]) for s in suspects if s["kind"] == kind and s["name"] == name), None)


def suspects_verdict(doc: Mapping[str, Any] | None) -> Outcome:
    """Whether the ranking names the incident's culprits (see the module doc)."""
    groups = list((doc or {}).get("groups", ()))
    if not groups:
        return Outcome(False, "no suspects were ranked")
    group = max(groups, key=lambda g: int(g.get("crashes", 0)))
    suspects = list(group.get("suspects", ()))
    procs = [s["name"] for s in suspects if s["kind"] == "procedure"]
    if not procs or procs[0] != PROCEDURE:
        return Outcome(False, f"{PROCEDURE} is not the first procedure among the suspects: {procs[:3]}")
    setting, flag = _rank(suspects, "setting", SETTING), _rank(suspects, "flag", FLAG)
    if setting is None or flag is None:
        return Outcome(False, f"'{SETTING}' or {FLAG} is missing from the suspects")
    others = [int(s["rank"]) for s in suspects if s["kind"] == "flag" and s["name"] != FLAG]
    if others and min(others) < max(setting, flag):
        return Outcome(False, f"an innocent flag ranks above '{SETTING}' or {FLAG}")
    return Outcome(
        True,
        f"the suspects rank {PROCEDURE} first among procedures, with '{SETTING}' (#{setting}) and "
        f"{FLAG} (#{flag}) above every other flag.",
    )
