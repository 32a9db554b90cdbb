"""The crash path: the parallel worker's crash block, the dump file, then a real SIGSEGV.

A call of the trigger procedure (or SIGUSR1) starts the procedure on a user session
with parallel workers; one worker (family = the parent spid) faults. The block goes to
the errorlog in one write, the truth line names the worker, parent, login and dump, the
dump is written (optionally cut short) and fsynced, and the process kills itself with
SIGSEGV after switching core files off.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import TYPE_CHECKING, NoReturn

from monitor.sim import crashblock
from monitor.sim.dumpfile import dump_path, write_dump
from monitor.sim.errorlog_writer import Prefix, stamp
from monitor.sim.scenario import ScheduledCall
from monitor.sim.workload import (
    CRASH_INNER_SQL,
    CRASH_LINE,
    CRASH_PROCEDURE,
    CRASH_STATEMENT,
    MAX_WORKERS_PER_CALL,
    PROCEDURES,
    Workload,
)

if TYPE_CHECKING:
    from monitor.sim.dataserver import Dataserver


def inner_statement(index: int | None) -> bool:
    """Whether the block of scheduled call ``index`` shows the statement inside the procedure as
    ``SQL causing error`` (as most real crashes in a procedure do): every call but each fifth.
    A crash forced by a signal (no call) shows the batch.

    >>> [inner_statement(i) for i in (0, 1, 2, 3, 4, 5, None)]
    [False, True, True, True, True, False, False]
    """
    return index is not None and index % 5 != 0


def crash_and_die(
    server: Dataserver, workload: Workload, index: int | None, call: ScheduledCall | None
) -> NoReturn:
    """Write the crash block, a truth line and the dump, then die by SIGSEGV. Never returns."""
    proc = PROCEDURES.get(call.procedure, CRASH_PROCEDURE) if call else CRASH_PROCEDURE
    parent = workload.user_session(call.login if call else None)
    degree = min(max(2, int(server.state.config().get("max parallel degree", "2"))), MAX_WORKERS_PER_CALL)
    sql = workload.sql(proc)
    server.state.begin(workload.statement(parent, proc, sql, running=True))
    workers = [workload.worker(parent) for _ in range(degree)]
    for w in workers:
        server.state.begin(workload.statement(w, proc, CRASH_INNER_SQL, running=True))
    victim = server.rng.choice(workers)
    ctx = crashblock.CrashContext(
        spid=victim.spid,
        kpid=victim.kpid,
        family=parent.spid,
        suid=parent.suid,
        login=parent.login,
        host=parent.host,
        program=parent.program,
        curdb=parent.dbid,
        sql=sql,
        inner_sql=CRASH_INNER_SQL,
        statement_number=CRASH_STATEMENT,
        line_number=CRASH_LINE,
        causing_sql=CRASH_INNER_SQL if inner_statement(index) else None,
    )
    text = crashblock.render(ctx, server.rng)
    prefix = Prefix(server.topology.thread(victim.engine), parent.spid, victim.spid)
    when = server.log.write_block(prefix, text.lines)
    opts = server.opts
    opts.dump_dir.mkdir(parents=True, exist_ok=True)
    path = dump_path(opts.dump_dir, opts.name, when)
    stop_at = None if opts.dump_truncate is None else int(opts.dump_size * opts.dump_truncate)
    server.truth.write(
        "crash",
        trigger="signal" if call is None else "scenario",
        call=index,
        at=call.at if call else None,
        log_time=stamp(when),
        signal=11,
        procedure=proc.name,
        sql=sql,
        spid=victim.spid,
        family=parent.spid,
        kpid=victim.kpid,
        suid=parent.suid,
        login=parent.login,
        host=parent.host,
        program=parent.program,
        db=parent.db,
        engine=victim.engine,
        thread=prefix.thread,
        fault=text.fault,
        frames=list(text.frames),
        flags=server.state.flags(),
        config=server.state.config(),
        dump_path=str(path),
        dump_size=opts.dump_size,
    )
    server.state.set_dumping(True)  # monState.DiagnosticDumps = 1 while the dump is written
    texts = [s.sql for s in server.state.since(0)[-300:]]
    texts += [sql, CRASH_INNER_SQL, "Tolvansson, Tolvan 19121212-1212"]
    result = write_dump(
        path,
        server=opts.name,
        version=server.scenario.version,
        size=opts.dump_size,
        texts=texts,
        rng=server.rng,
        seconds=opts.dump_seconds,
        stop_at=stop_at,
    )
    server.truth.write("dump", path=str(result.path), bytes=result.size, complete=result.complete)
    die_by_sigsegv()


def die_by_sigsegv() -> NoReturn:
    """Die by a real SIGSEGV (no core file). Never returns."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(5.0)  # not reached: the signal is delivered before os.kill returns to Python
    os._exit(128 + signal.SIGSEGV)
