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
from monitor.sim.state import Session
from monitor.sim.workload import (
    CRASH_INNER_SQL,
    CRASH_LINE,
    CRASH_PROCEDURE,
    CRASH_STATEMENT,
    MAX_WORKERS_PER_CALL,
    PROCEDURES,
    Procedure,
    Workload,
    procedure_named,
)

if TYPE_CHECKING:
    from monitor.sim.dataserver import Dataserver


def causing_sql(call: ScheduledCall | None) -> str | None:
    """What the crash block shows as ``SQL causing error`` instead of the batch: the parallel
    select inside the procedure for a scheduled call whose ``causing`` is ``inside`` (as most
    real crashes in a procedure do), else ``None`` (the ``exec`` batch; also for a crash
    forced by a signal).

    >>> causing_sql(ScheduledCall(12.0, "p_brev_sok_central_utskrift", None)) == CRASH_INNER_SQL
    True
    >>> causing_sql(ScheduledCall(36.0, "p_x", None, causing="exec")), causing_sql(None)
    (None, None)
    """
    return CRASH_INNER_SQL if call is not None and call.causing == "inside" else None


def begin_crashing_call(
    workload: Workload, call: ScheduledCall | None, degree: int
) -> tuple[Procedure, Session, str, list[Session]]:
    """Start the call that crashes: (procedure, parent session, its ``exec`` batch, workers).

    Side effects on the workload's state: the call's ``before`` procedures, then the
    procedure's statements before the parallel select, finish on the parent (so
    ``monSysStatement`` names the procedure on the crashing family even when the block shows
    only the select); the parent executes the select (statement 14, line 233) and ``degree``
    workers (family = the parent spid) execute it too.
    """
    proc = PROCEDURES.get(call.procedure, CRASH_PROCEDURE) if call else CRASH_PROCEDURE
    parent = workload.user_session(call.login, call.program) if call else workload.user_session()
    sql = workload.sql(proc)
    first = [procedure_named(name) for name in call.before] if call else []
    workload.run_body(proc, parent, sql, CRASH_STATEMENT - 1, first)
    workload.state.begin(workload.statement(parent, proc, sql, running=True))
    workers = [workload.worker(parent) for _ in range(degree)]
    for w in workers:
        workload.state.begin(workload.statement(w, proc, CRASH_INNER_SQL, running=True))
    return proc, parent, sql, workers


def crash_and_die(
    server: Dataserver, workload: Workload, index: int | None, call: ScheduledCall | None
) -> NoReturn:
    """Write the crash block, a truth line and the dump, then die by SIGSEGV. Never returns."""
    degree = min(max(2, int(server.state.config().get("max parallel degree", "2"))), MAX_WORKERS_PER_CALL)
    proc, parent, sql, workers = begin_crashing_call(workload, call, degree)
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
        causing_sql=causing_sql(call),
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
        causing_sql=ctx.causing_sql or sql,
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
