"""What the TDS server needs from the dataserver process, and the per-query environment.

:class:`Host` is built by the dataserver with its live state, errorlog writer and paths.
Configuration changes go through :meth:`Host.change_config` from both the scenario's
timeline (main thread) and ``sp_configure`` (a connection thread), so the run value, the
errorlog line and the ``.cfg`` file change together under one lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from monitor.sim.bootlog import config_changed
from monitor.sim.errorlog_writer import Component, ErrorlogWriter, Prefix
from monitor.sim.layout import write_cfg
from monitor.sim.params import PARAMS
from monitor.sim.state import SimState
from monitor.sim.truth import TruthWriter
from monitor.sim.workload import Topology

# Databases of the simulated server: name -> dbid. The application's data lives in imx_prod;
# "imx" (the name in the SQL contract) is accepted as another name for it.
DATABASES = {"master": 1, "tempdb": 2, "model": 3, "imx_prod": 4, "imx_audit": 5, "sybsystemprocs": 31514}
DB_ALIASES = {"imx": "imx_prod"}


def resolve_db(name: str) -> str | None:
    """The database a name means (``imx`` -> ``imx_prod``), or ``None`` if there is none."""
    name = DB_ALIASES.get(name, name)
    return name if name in DATABASES else None


def db_name(dbid: int) -> str | None:
    """The name of database ``dbid``, or ``None``."""
    return next((n for n, i in DATABASES.items() if i == dbid), None)


@dataclass(slots=True)
class Conn:
    """One client connection's server-side state: who it is and its pipe read positions."""

    spid: int
    kpid: int
    login: str
    suid: int
    app: str
    host: str
    engine: int
    db: str = "master"
    statement_pos: int = 0  # pipe position of the last monSysStatement row this connection read
    text_pos: int = 0  # last monSysSQLText seq this connection has read
    batch: int = 0
    sql: str = ""  # the batch executing now (monProcessSQLText shows it)


@dataclass(frozen=True, slots=True)
class Env:
    """Everything one query may read: live state, the host, the asking connection, the time."""

    state: SimState
    host: Host
    conn: Conn
    now: float


class Host:
    """The dataserver seen from the TDS server. Thread-safe."""

    def __init__(
        self,
        *,
        state: SimState,
        log: ErrorlogWriter,
        truth: TruthWriter,
        cfg: Path,
        topology: Topology,
        dump_dir: Path,
        password: str,
    ) -> None:
        self.state = state
        self.log = log
        self.truth = truth
        self.cfg = cfg
        self.topology = topology
        self.dump_dir = dump_dir
        self.password = password
        self._config_lock = threading.Lock()

    @property
    def server_name(self) -> str:
        return self.state.server

    @property
    def version(self) -> str:
        return self.state.version

    @property
    def kernel_mode(self) -> str:
        """``process`` with engine processes, else ``threaded`` (``@@kernelmode``)."""
        return "process" if self.topology.process_mode else "threaded"

    def prefix(self, spid: int, engine: int) -> Prefix:
        """The errorlog prefix of a task on ``engine``."""
        return Prefix(self.topology.thread(engine % max(1, self.topology.engines)), 0, spid)

    def write_log(self, prefix: Prefix, lines: list[tuple[Component, str]]) -> datetime:
        """Append errorlog records with one prefix and time stamp. Returns the stamp."""
        return self.log.write_block(prefix, lines)

    def configured_value(self, name: str) -> str:
        """The configured value of a parameter (pending static change, else run value, else default)."""
        value = self.state.configured().get(name)
        if value is not None:
            return value
        p = PARAMS.get(name)
        return p.default if p else "0"

    def run_value(self, name: str) -> str:
        """The run value of a parameter (default if the sim never set it)."""
        value = self.state.config().get(name)
        if value is not None:
            return value
        p = PARAMS.get(name)
        return p.default if p else "0"

    def change_config(
        self, name: str, new: str, by: str, prefix: Prefix, *, static: bool = False
    ) -> tuple[str, datetime]:
        """Change a parameter as ``sp_configure`` does; returns (old value, errorlog stamp).

        Dynamic: the run value changes at once (the workload and the crash trigger see it).
        Static: only the configured value changes; the run value follows at the next boot,
        which reads the ``.cfg``. Either way the errorlog gets ASE's line and the ``.cfg`` is
        rewritten (the previous one kept as ``.001``, ...). Raises ``OSError`` if the file
        cannot be written.
        """
        with self._config_lock:
            old = self.configured_value(name)
            if static:
                self.state.set_pending(name, new)
            else:
                self.state.set_config(name, new)
            when = self.log.write(prefix, "server", config_changed(name, by, old, new))
            write_cfg(self.cfg, self.state.configured())
        return old, when
