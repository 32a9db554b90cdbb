"""Wiring of the change collectors into the agent (issue 4): settings (+ .cfg file, dump
conditions), procedures and flags per server, and the deployments file once.

They resume from what the store knew (``known_*``), so a restarted agent reports only
real changes. Each collector has its own database connection, made by a login factory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.deployments import DeploymentFileWatch
from collectors.flags import FlagsCollector
from collectors.mda.connect import Target, open_connection
from collectors.procedures import ProceduresCollector
from collectors.process import DataserverTarget, find_dataservers, parse_run_file
from collectors.settings import SettingsCollector
from monitor.config import ServerConfig
from monitor.events import Event
from monitor.ledger import known_flags, known_procedures, known_settings

if TYPE_CHECKING:
    from monitor.agent import Agent

log = logging.getLogger("asewatch.agent")
Emit = Callable[[Sequence[Event], Mapping[str, str]], None]


def start_change_collectors(agent: Agent, servers: Sequence[ServerConfig]) -> None:
    """Spawn the change collectors the config asks for, in named threads of ``agent``."""
    ch = agent.config.changes
    with agent.store.reader() as r:
        known = {
            s.name: (
                known_settings(r, s.name, "sysconfigures"), known_settings(r, s.name, "cfgfile"),
                known_flags(r, s.name), known_procedures(r, s.name),
            )
            for s in servers
        }  # fmt: skip
    by_name = {s.name: s for s in servers}
    for s in servers:
        sys_known, cfg_known, _, procs_known = known[s.name]
        if ch.settings.enabled:
            connect = db_connect(agent, s, "settings")
            settings = SettingsCollector(
                s.name, connect, known=sys_known, known_cfg=cfg_known, locate_cfg=cfg_locator(agent, s),
                poll_interval=ch.settings.poll_interval, cfg_poll_interval=ch.settings.cfg_poll_interval,
                read_dump_conditions=ch.settings.dump_conditions,
            )  # fmt: skip
            for source in (settings.source, settings.cfg_source) if connect else (settings.cfg_source,):
                agent.health.register(source)
            agent.spawn(f"settings-{s.name}", _collector(agent, settings.run, s.name))
        pconnect = db_connect(agent, s, "procedures")
        if ch.procedures.databases and pconnect is not None:
            procs = ProceduresCollector(
                s.name, pconnect, ch.procedures.databases, known=procs_known,
                poll_interval=ch.procedures.poll_interval,
            )  # fmt: skip
            agent.health.register(procs.source)
            agent.spawn(f"procedures-{s.name}", _collector(agent, procs.run, s.name))
    for f in ch.flags:
        fconnect = db_connect(agent, by_name[f.server], "flags") if f.query is not None else None
        if f.query is not None and fconnect is None:
            log.warning("flags of %s: a query needs [server.database]; not collected", f.server)
            continue
        flags = FlagsCollector(
            f.server, query=f.query, connect=fconnect, path=f.file, known=known[f.server][2],
            poll_interval=f.poll_interval,
        )  # fmt: skip
        agent.health.register(flags.source)
        agent.spawn(f"flags-{f.server}", _collector(agent, flags.run, f.server))
    if ch.deployments_file is not None:
        watch = DeploymentFileWatch(
            ch.deployments_file, [s.name for s in servers], poll_interval=ch.deployments_poll_interval
        )
        agent.health.register(watch.source)

        def run_watch() -> None:
            watch.run(lambda server, events: agent.submit(events, {}, server), agent.stopping)

        agent.spawn("deployments", run_watch)


def db_connect(agent: Agent, server: ServerConfig, collector: str) -> Callable[[], Any] | None:
    """A login factory for one collector's own connection, or None without ``[server.database]``."""
    db = server.database
    if db is None:
        return None
    import pyodbc  # noqa: PLC0415 - only agents with a database need the driver

    target = Target(server.name, f"{collector}:{server.name}", db)
    return lambda: open_connection(target, pyodbc.connect)


def _collector(agent: Agent, run: Callable[[Emit, threading.Event], None], server: str) -> Callable[[], None]:
    def target() -> None:
        run(agent.emitter(server), agent.stopping)

    return target


def cfg_locator(agent: Agent, server: ServerConfig) -> Callable[[], Path | None]:
    """The configured .cfg file, else the ``-c`` of the running dataserver (or its RUN file)."""
    configured = agent.config.changes.settings.cfg_file(server.name)

    def locate() -> Path | None:
        if configured is not None:
            return configured
        for proc in find_dataservers(DataserverTarget(server.name, server.pid_file, server.run_file)):
            if proc.engine == 0 and proc.args.config_file:
                return Path(proc.args.config_file)
        if server.run_file is not None and server.run_file.is_file():
            args = parse_run_file(server.run_file.read_text(errors="replace"), str(server.run_file))
            return Path(args.config_file) if args.config_file else None
        return None

    return locate
