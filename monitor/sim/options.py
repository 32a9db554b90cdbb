"""The dataserver's command line: RUN-file flags plus the sim's long options; engine children.

``dataserver -sNAME -e<errorlog> -c<cfg> -M<shm dir> [-d<master> -N<props> -i<dir> -T<flag>]
[--scenario FILE --t0 EPOCH --dump-dir DIR --dump-size BYTES --tds-port N ...]``. An argument
``-ONLINE:k`` makes the process an extra engine of a process-mode server.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from monitor.sim.layout import Layout

PARENT_ENV = "ASEWATCH_SIM_PARENT"
PASSWORD_ENV = "ASEWATCH_SIM_TDS_PASSWORD"  # noqa: S105 - an env var name: the password stays off argv
DEFAULT_PASSWORD = "sim-secret"  # noqa: S105 - the simulator's documented test password
DEFAULT_DUMP_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    """The dataserver's command line, resolved to paths."""

    name: str
    errorlog: Path
    cfg: Path
    shm_dir: Path
    master: Path
    workdir: Path
    scenario: Path | None
    t0: float
    dump_dir: Path
    dump_size: int
    dump_seconds: float
    dump_truncate: float | None
    engines: int
    rate: float | None
    seed: int | None
    online: int | None
    tds_port: int | None = None

    @property
    def tds_password(self) -> str:
        """The password of the TDS logins (``sa``, ``asewatch``): from the environment, or the default."""
        return os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD

    @property
    def layout(self) -> Layout:
        """The workdir's files (truth, flags, deploy log, pid file): named in one place."""
        return Layout(self.workdir, self.name)

    @property
    def truth(self) -> Path:
        return self.layout.truth

    @property
    def flags(self) -> Path:
        return self.layout.flags

    @property
    def deploy_log(self) -> Path:
        """The release tool's deploy log: one JSON line per deployment (the ledger watches it)."""
        return self.layout.deploy_log

    @property
    def pidfile(self) -> Path:
        return self.layout.pidfile


def parse_args(argv: list[str]) -> Options:
    """Parse RUN-file style flags (``-sNAME -e… -c… -M…``) plus the sim's long options."""
    online = None
    rest = []
    for arg in argv:
        if arg.startswith("-ONLINE:"):
            online = int(arg.partition(":")[2])
        else:
            rest.append(arg)
    p = argparse.ArgumentParser(
        prog="dataserver", allow_abbrev=False, description="simulated SAP ASE dataserver"
    )
    p.add_argument("-s", dest="name", required=True, help="server name")
    p.add_argument("-e", dest="errorlog", help="errorlog path")
    p.add_argument("-c", dest="cfg", help="configuration file")
    p.add_argument("-M", dest="shm_dir", help="directory for shared memory files")
    p.add_argument("-d", dest="master", help="master device")
    p.add_argument("-N", dest="properties", help="SySAM properties file (ignored)")
    p.add_argument("-i", dest="interfaces", help="interfaces directory (ignored)")
    p.add_argument("-T", dest="trace", action="append", default=[], help="trace flag (ignored)")
    p.add_argument("--workdir", help="sim working directory (default: the -M directory)")
    p.add_argument("--scenario", help="scenario TOML file")
    p.add_argument("--t0", type=float, help="scenario start, POSIX seconds (default: now)")
    p.add_argument("--dump-dir", help="where crash dumps go (default: <workdir>/dumps)")
    p.add_argument("--dump-size", type=int, default=DEFAULT_DUMP_SIZE, help="dump size in bytes")
    p.add_argument("--dump-seconds", type=float, default=0.2, help="time taken to write a dump")
    p.add_argument("--dump-truncate", type=float, help="die after this fraction (0-1) of the dump")
    p.add_argument("--engines", type=int, default=1, help="process mode with N engine processes")
    p.add_argument("--rate", type=float, help="background statements per second (default: scenario)")
    p.add_argument("--seed", type=int, help="random seed (default: random)")
    p.add_argument(
        "--tds-port", type=int, help="serve TDS 5.0 on 127.0.0.1:PORT (0: a free port); default: off"
    )
    ns = p.parse_args(rest)
    shm = Path(ns.shm_dir or ns.workdir or os.getcwd()).resolve()
    workdir = Path(ns.workdir).resolve() if ns.workdir else shm
    name: str = ns.name
    return Options(
        name=name,
        errorlog=Path(ns.errorlog) if ns.errorlog else workdir / f"{name}.log",
        cfg=Path(ns.cfg) if ns.cfg else workdir / f"{name}.cfg",
        shm_dir=shm,
        master=Path(ns.master) if ns.master else workdir / "data" / "master.dat",
        workdir=workdir,
        scenario=Path(ns.scenario) if ns.scenario else None,
        t0=ns.t0 if ns.t0 is not None else time.time(),
        dump_dir=Path(ns.dump_dir) if ns.dump_dir else workdir / "dumps",
        dump_size=max(0, ns.dump_size),
        dump_seconds=max(0.0, ns.dump_seconds),
        dump_truncate=ns.dump_truncate,
        engines=max(1, ns.engines),
        rate=ns.rate,
        seed=ns.seed,
        online=online,
        tds_port=ns.tds_port,
    )


def engine_child() -> int:
    """An extra engine in process mode: idle until engine 0 (the parent) is gone or SIGTERM."""
    parent = int(os.environ.get(PARENT_ENV, "0") or os.getppid())
    stopping = False

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stopping and os.getppid() == parent:
        time.sleep(0.2)
    return 0
