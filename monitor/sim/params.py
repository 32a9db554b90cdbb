"""The simulated server's configuration parameters: ``sp_configure`` names, sections, defaults.

One table serves ``sysconfigures`` / ``syscurconfigs``, ``sp_configure`` and the ``.cfg``
file's sections. Names, sections, defaults, units and dynamic/static follow ASE 15.7/16
(research/ase-facts.md section d); the ``config`` numbers are the sim's own (real servers
number them differently, so a collector must join on ``name``, never on a number).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Param:
    """One configuration parameter. ``kind`` "str" parameters keep their value in ``value2``."""

    config: int
    name: str
    section: str
    default: str
    dynamic: bool
    unit: str
    minimum: int = 0
    maximum: int = 2147483647
    memory_kb: int = 0
    kind: str = "int"


# Section rows of sysconfigures (parent = 0); parameters point at them with ``parent``.
SECTIONS: Mapping[str, int] = MappingProxyType(
    {
        "General Information": 1,
        "Backup/Recovery": 2,
        "Diagnostics": 3,
        "Lock Manager": 4,
        "Monitoring": 5,
        "Network Communication": 6,
        "Parallel Query": 7,
        "Physical Memory": 8,
        "Processors": 9,
        "Query Tuning": 10,
        "SQL Server Administration": 11,
        "User Environment": 12,
    }
)

_P = Param
_ALL: tuple[Param, ...] = (
    _P(101, "configuration file", "General Information", "0", True, "name", kind="str"),
    _P(111, "recovery interval in minutes", "Backup/Recovery", "5", True, "minutes", maximum=32767),
    _P(112, "print recovery information", "Backup/Recovery", "0", True, "switch", maximum=1),
    _P(113, "max concurrently recovered db", "Backup/Recovery", "0", True, "number", maximum=32766),
    _P(114, "number of checkpoint tasks", "Backup/Recovery", "1", True, "number", 1, 8),
    _P(121, "dump on conditions", "Diagnostics", "0", True, "switch", maximum=1),
    _P(122, "maximum dump conditions", "Diagnostics", "10", False, "number", 10, 100, 4),
    _P(123, "memory dump compression level", "Diagnostics", "0", True, "number", maximum=9),
    _P(124, "number of dump threads", "Diagnostics", "1", True, "number", 1, 8),
    _P(131, "number of locks", "Lock Manager", "10000", True, "number", 1000, memory_kb=1800),
    _P(141, "enable monitoring", "Monitoring", "0", True, "switch", maximum=1),
    _P(142, "statement pipe active", "Monitoring", "0", True, "switch", maximum=1),
    _P(143, "statement pipe max messages", "Monitoring", "0", True, "number", memory_kb=1),
    _P(144, "sql text pipe active", "Monitoring", "0", True, "switch", maximum=1),
    _P(145, "sql text pipe max messages", "Monitoring", "0", True, "number", memory_kb=1),
    _P(146, "errorlog pipe active", "Monitoring", "0", True, "switch", maximum=1),
    _P(147, "errorlog pipe max messages", "Monitoring", "0", True, "number"),
    _P(148, "plan text pipe active", "Monitoring", "0", True, "switch", maximum=1),
    _P(149, "plan text pipe max messages", "Monitoring", "0", True, "number"),
    _P(150, "SQL batch capture", "Monitoring", "0", True, "switch", maximum=1),
    _P(151, "max SQL text monitored", "Monitoring", "0", False, "bytes", maximum=2147483647),
    _P(152, "statement statistics active", "Monitoring", "0", True, "switch", maximum=1),
    _P(153, "per object statistics active", "Monitoring", "0", True, "switch", maximum=1),
    _P(154, "wait event timing", "Monitoring", "0", True, "switch", maximum=1),
    _P(161, "default network packet size", "Network Communication", "2048", False, "bytes", 512, 65024),
    _P(162, "max network packet size", "Network Communication", "2048", False, "bytes", 512, 65024),
    _P(171, "number of worker processes", "Parallel Query", "0", True, "number", memory_kb=262),
    _P(172, "max parallel degree", "Parallel Query", "1", True, "number", 1, 255),
    _P(173, "max scan parallel degree", "Parallel Query", "1", True, "number", 1, 255),
    _P(174, "max repartition degree", "Parallel Query", "1", True, "number", 1, 255),
    _P(175, "max resource granularity", "Parallel Query", "10", True, "percent", 1, 100),
    _P(176, "max query parallel degree", "Parallel Query", "1", True, "number", 1, 255),
    _P(177, "max utility parallel degree", "Parallel Query", "1", True, "number", 1, 255),
    _P(178, "min pages for parallel scan", "Parallel Query", "200", True, "number", 20),
    _P(179, "memory per worker process", "Parallel Query", "1024", True, "bytes", 1024, 2147483647),
    _P(180, "prod-consumer overlap factor", "Parallel Query", "20", True, "percent", 1, 100),
    _P(181, "enable deferred parallel", "Parallel Query", "0", True, "switch", maximum=1),
    _P(182, "enable streamlined parallel", "Parallel Query", "0", True, "switch", maximum=1),
    _P(191, "max memory", "Physical Memory", "229376", True, "memory pages(2k)", 32768),
    _P(192, "lock shared memory", "Physical Memory", "0", False, "switch", maximum=1),
    _P(193, "allocate max shared memory", "Physical Memory", "0", True, "switch", maximum=1),
    _P(201, "max online engines", "Processors", "1", False, "number", 1, 1024),
    _P(202, "number of engines at startup", "Processors", "1", False, "number", 1, 1024),
    _P(211, "optimization goal", "Query Tuning", "allrows_mix", True, "name", kind="str"),
    _P(212, "number of sort buffers", "Query Tuning", "500", True, "number", maximum=32767),
    _P(221, "kernel mode", "SQL Server Administration", "threaded", False, "name", kind="str"),
    _P(222, "time slice", "SQL Server Administration", "100", True, "milliseconds", 50, 1000),
    _P(223, "cpu grace time", "SQL Server Administration", "500", True, "clock ticks", 1, 2147483647),
    _P(224, "procedure cache size", "SQL Server Administration", "14000", True, "memory pages(2k)", 3271),
    _P(225, "number of open objects", "SQL Server Administration", "500", True, "number", 100),
    _P(231, "number of user connections", "User Environment", "25", True, "number", 5, 32767, 118),
    _P(232, "stack size", "User Environment", "86016", False, "bytes", 86016),
)

PARAMS: Mapping[str, Param] = MappingProxyType({p.name: p for p in _ALL})
OPTIMIZATION_GOALS = ("allrows_oltp", "allrows_mix", "allrows_dss")


def section_of(name: str) -> str:
    """The ``.cfg`` section of a parameter; ``"Unknown"`` for a name not in the catalogue."""
    p = PARAMS.get(name)
    return p.section if p else "Unknown"


def find(pattern: str) -> tuple[Param, ...]:
    """Parameters ``sp_configure '<pattern>'`` means: the exact name, else every name containing it.

    >>> [p.name for p in find("max parallel degree")]
    ['max parallel degree']
    >>> len(find("parallel")) > 3
    True
    """
    exact = PARAMS.get(pattern)
    if exact is None:
        exact = next((p for p in _ALL if p.name.lower() == pattern.lower()), None)
    if exact is not None:
        return (exact,)
    low = pattern.lower()
    return tuple(p for p in _ALL if low in p.name.lower())


def all_params() -> tuple[Param, ...]:
    """Every parameter, in config-number order."""
    return _ALL
