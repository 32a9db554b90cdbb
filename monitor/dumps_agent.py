"""Wiring of the dump watcher and keeper into the agent (issue 5).

Threads: ``dumps`` (the watcher: folders, writers, hashing) and ``dumps-keeper`` (every
``KEEPER_TICK_S``: attach dumps to crash records that arrived late; every
``retention_interval``: flood-suppressed files and quotas). The keeper's ``catch_up`` must
run before the store writer starts, and its ``on_committed`` from the writer's callback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from collectors.dumps import DumpWatch
from monitor.config_dumps import DumpsConfig
from monitor.dumps import DumpKeeper, watched_folders
from monitor.errors import StoreError

if TYPE_CHECKING:
    from monitor.agent import Agent

log = logging.getLogger("asewatch.agent")
KEEPER_TICK_S = 2.0


def start_dumps(agent: Agent, keeper: DumpKeeper, config: DumpsConfig) -> None:
    """Spawn the dump watcher over every configured folder (none: nothing is started) and the
    keeper's periodic thread, in named threads of ``agent``."""
    servers = agent.config.servers
    folders = watched_folders([(s.name, s.dump_dirs) for s in servers], config)
    if not folders:
        return
    resume = keeper.resume()
    watch = DumpWatch(
        folders,
        servers=[s.name for s in servers],
        settle_seconds=config.settle_seconds,
        poll_interval=config.poll_interval,
        use_watchdog=config.use_watchdog,
        expected_bytes=dict(config.expected_bytes),
        writer_exit_truncates=config.writer_exit_truncates,
        known=resume.known,
        resume=resume.writing,
        hashing=resume.hashing,
    )
    agent.health.register(watch.source)
    agent.spawn("dumps", lambda: watch.run(lambda ev, pos: agent.submit(ev, pos, None), agent.stopping))

    def keep() -> None:
        while not agent.stopping.wait(KEEPER_TICK_S):
            try:
                keeper.tick()
            except (StoreError, OSError) as e:  # logged, retried at the next tick
                log.error("dump retention: %s", e)

    agent.spawn("dumps-keeper", keep)
