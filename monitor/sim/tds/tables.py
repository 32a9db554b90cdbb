"""The MDA tables (``master..mon*``) served from the live :class:`~monitor.sim.state.SimState`.

Columns follow research/ase-facts.md section c (names and types as DbxTune reads them from
15.x/16). A column with ``since`` exists only from that ASE version on (parsed from
``@@version``), so ``monTableColumns`` changes with the server's version and a collector
can pick its columns from it. ``monSysStatement`` and ``monSysSQLText`` are pipe tables:
each connection reads only the rows it has not read yet, and a read consumes them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from monitor.sim.state import TEXT_CHUNK, StatementRecord
from monitor.sim.tds.host import Env
from monitor.sim.tds.wire import DT, I1, I2, I4, VC, Column

Row = tuple[object, ...]
Version = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Table:
    """A table: its columns (some only from a version on) and the function that makes its rows.

    ``rows(env)`` yields full rows in the order of ``columns``; ``pipe`` names a pipe table.
    """

    db: str
    name: str
    columns: tuple[Column, ...]
    rows: Callable[[Env], Iterable[Row]]
    pipe: bool = False
    since: tuple[tuple[str, Version], ...] = ()
    description: str = ""

    def visible(self, version: Version) -> list[tuple[int, Column]]:
        """(index, column) of the columns this server version has."""
        gated = dict(self.since)
        return [(i, c) for i, c in enumerate(self.columns) if gated.get(c.name, (0, 0, 0)) <= version]


def parse_version(text: str) -> Version:
    """(major, minor, service pack) from an ``@@version`` string.

    >>> parse_version("Adaptive Server Enterprise/16.0 SP04 PL03/EBF 30399 SMP/P/x86_64")
    (16, 0, 4)
    >>> parse_version("Adaptive Server Enterprise/15.7/EBF 21708 SMP SP110 /P/x86_64")
    (15, 7, 110)
    """
    m = re.search(r"/(\d+)\.(\d+)", text)
    sp = re.search(r"\bSP\s?(\d+)", text)
    if m is None:
        return (16, 0, 0)
    return int(m.group(1)), int(m.group(2)), int(sp.group(1)) if sp else 0


def _chunks(text: str) -> list[str]:
    text = text or " "
    return [text[i : i + TEXT_CHUNK] for i in range(0, len(text), TEXT_CHUNK)]


# --------------------------------------------------------------------------- monState
def _mon_state(env: Env) -> Iterable[Row]:
    st = env.state
    up = env.now - st.boot_time
    n = st.statements_total()
    users = sum(1 for s in st.sessions() if s.family == 0)
    yield (
        5, n // 900, int(up // 86400), int(up // 60), 0, 1 if st.dumping() else 0, users, 5,
        st.boot_time, st.boot_time, n, n // 400, n * 2, n // 7, n // 11, n // 40, 0,
        n * 3, n * 5, n // 50, n // 30, n // 9, 0, n // 3, n * 4, n // 6, n // 12, n // 8, n * 37,
    )  # fmt: skip


MON_STATE = (
    *map(I4, ("LockWaitThreshold", "LockWaits", "DaysRunning", "CheckPoints", "NumDeadlocks")),
    I4("DiagnosticDumps"), I4("Connections"), I4("MaxRecovery"), DT("StartDate"), DT("CountersCleared"),
    *map(I4, ("Transactions", "Rollbacks", "Selects", "Updates", "Inserts", "Deletes", "Merges")),
    *map(I4, ("TableAccesses", "IndexAccesses", "TempDbObjects", "WorkTables", "ULCFlushes")),
    *map(I4, ("ULCFlushFull", "ULCKBWritten", "PagesRead", "PagesWritten", "PhysicalReads")),
    I4("PhysicalWrites"), I4("LogicalReads"),
)  # fmt: skip

# ------------------------------------------------------------------------- monProcess
# System tasks of a real server (they have no login).
SYSTEM_TASKS = (
    (2, "NETWORK HANDLER"), (3, "DEADLOCK TUNE"), (4, "MIRROR HANDLER"), (5, "KPP HANDLER"),
    (6, "HK WASH"), (7, "HK GC"), (8, "HK CHORES"), (9, "CHECKPOINT SLEEP"), (10, "PORT MANAGER"),
    (11, "AUDIT PROCESS"),
)  # fmt: skip

MON_PROCESS = (
    I4("SPID"), I1("InstanceID"), I4("KPID"), I4("ServerUserID"), I4("OrigServerUserID"), I4("BatchID"),
    I4("ContextID"), I4("LineNumber"), I4("SecondsConnected"), I4("DBID"), I2("EngineNumber"),
    VC("Priority", 10), I4("FamilyID"), VC("Login", 30), VC("Application", 30), VC("Command", 30),
    I4("NumChildren"), I4("SecondsWaiting"), I2("WaitEventID"), I4("BlockingSPID"), I4("BlockingXLOID"),
    VC("DBName", 30), VC("EngineGroupName", 30), VC("ExecutionClass", 30), VC("MasterTransactionID", 255),
    VC("HostName", 30), VC("ClientName", 30), VC("ClientHostName", 30), VC("ClientApplName", 30),
)  # fmt: skip


def _mon_process(env: Env) -> Iterable[Row]:
    st = env.state
    boot = int(st.boot_time)
    up = int(env.now - st.boot_time)
    for spid, command in SYSTEM_TASKS:
        kpid = 65537 * spid + (boot & 0xFFFF)
        yield (
            spid, 0, kpid, 0, 0, 0, 0, 0, up, 1, 0, "MEDIUM", 0, None, None, command, 0, 0, 104, 0, None,
            "master", "ANYENGINE", "EC2", None, None, None, None, None,
        )  # fmt: skip
    sessions = st.sessions()
    active = {s.spid: s for s in st.active()}
    children: dict[int, int] = {}
    for s in sessions:
        if s.family:
            children[s.family] = children.get(s.family, 0) + 1
    for s in sessions:
        a = active.get(s.spid)
        me = s.spid == env.conn.spid
        command = "SELECT" if me else ("EXECUTE" if a else "AWAITING COMMAND")
        if s.family and not a:
            command = "WORKER PROCESS"
        yield (
            s.spid, 0, s.kpid, s.suid, s.suid, env.conn.batch if me else (a.batch_id if a else 0),
            a.context_id if a else 0, a.line if a else 0, int(env.now - s.connected_at), s.dbid, s.engine,
            "MEDIUM", s.family, s.login, s.program, command, children.get(s.spid, 0), 0,
            0 if (a or me) else 250, 0, None, s.db, "ANYENGINE", "EC2", None, s.host, None, None, None,
        )  # fmt: skip


# ---------------------------------------------------------------- current statements
def _own(env: Env) -> StatementRecord:
    c = env.conn
    return StatementRecord(
        0, c.spid, c.kpid, 0, c.login, c.host, c.app, c.db, 1, "", 0, 1, 1, c.batch, 0,
        env.now, None, 0, 0, 0, 0, 0, 0, c.sql,
    )  # fmt: skip


def _running(env: Env) -> list[StatementRecord]:
    """Statements executing now, plus the asking connection's own query (as ASE shows it)."""
    rows = [a for a in env.state.active() if a.spid != env.conn.spid]
    rows.append(_own(env))
    rows.sort(key=lambda a: a.spid)
    return rows


MON_PROCESS_SQLTEXT = (
    I4("SPID"), I1("InstanceID"), I4("KPID"), I4("ServerUserID"), I4("BatchID"), I4("LineNumber"),
    I4("SequenceInLine"), VC("SQLText", 255),
)  # fmt: skip


def _suids(env: Env) -> dict[int, int]:
    return {s.spid: s.suid for s in env.state.sessions()}


def _mon_process_sqltext(env: Env) -> Iterable[Row]:
    suid = _suids(env)
    for a in _running(env):
        for i, chunk in enumerate(_chunks(a.sql), 1):
            yield a.spid, 0, a.kpid, suid.get(a.spid, 0), a.batch_id, 1, i, chunk


MON_PROCESS_STATEMENT = (
    I4("SPID"), I1("InstanceID"), I4("KPID"), I4("DBID"), I4("ProcedureID"), I4("PlanID"), I4("BatchID"),
    I4("ContextID"), I4("LineNumber"), I4("CpuTime"), I4("WaitTime"), I4("MemUsageKB"), I4("PhysicalReads"),
    I4("LogicalReads"), I4("PagesModified"), I4("PacketsSent"), I4("PacketsReceived"),
    I4("NetworkPacketSize"), I4("PlansAltered"), I4("RowsAffected"), VC("DBName", 30), DT("StartTime"),
    I4("StatementNumber"), I4("QueryOptimizationTime"),
)  # fmt: skip


def _plan_id(a: StatementRecord) -> int:
    return a.proc_id % 99991 if a.proc_id else 0


def _mon_process_statement(env: Env) -> Iterable[Row]:
    for a in _running(env):
        elapsed = max(0, int((env.now - a.start) * 1000))
        yield (
            a.spid, 0, a.kpid, a.dbid, a.proc_id, _plan_id(a), a.batch_id, a.context_id, a.line,
            min(elapsed, a.cpu_ms), a.wait_ms, 42, a.physical_reads, a.logical_reads, 0, 1, 1, 2048, 0,
            0, a.db, a.start, a.statement_number, 0,
        )  # fmt: skip


MON_PROCESS_PROCEDURES = (
    I4("SPID"), I1("InstanceID"), I4("KPID"), I4("DBID"), I4("OwnerUID"), I4("ObjectID"), I4("PlanID"),
    I4("MemUsageKB"), DT("CompileDate"), I4("ContextID"), I4("LineNumber"), I4("StatementNumber"),
    VC("DBName", 30), VC("OwnerName", 30), VC("ObjectName", 30), VC("ObjectType", 32),
)  # fmt: skip


def _mon_process_procedures(env: Env) -> Iterable[Row]:
    for a in env.state.active():
        if a.procedure:
            yield (
                a.spid, 0, a.kpid, a.dbid, 1, a.proc_id, _plan_id(a), 96, env.state.boot_time, a.context_id,
                a.line, a.statement_number, a.db, "dbo", a.procedure, "stored procedure",
            )  # fmt: skip


# ------------------------------------------------------------------------ pipe tables
MON_SYS_STATEMENT = (
    I4("SPID"), I1("InstanceID"), I4("KPID"), I4("DBID"), I4("ProcedureID"), I4("PlanID"), I4("BatchID"),
    I4("ContextID"), I4("LineNumber"), I4("CpuTime"), I4("WaitTime"), I4("MemUsageKB"), I4("PhysicalReads"),
    I4("LogicalReads"), I4("PagesModified"), I4("PacketsSent"), I4("PacketsReceived"),
    I4("NetworkPacketSize"), I4("PlansAltered"), I4("RowsAffected"), I4("ErrorStatus"), I4("HashKey"),
    I4("SsqlId"), I4("ProcNestLevel"), I4("StatementNumber"), VC("DBName", 30), DT("StartTime"),
    DT("EndTime"), I4("QueryOptimizationTime"),
)  # fmt: skip


def _mon_sys_statement(env: Env) -> Iterable[Row]:
    env.conn.statement_pos, records = env.state.pipe_read(env.conn.statement_pos)
    for a in records:
        yield (
            a.spid, 0, a.kpid, a.dbid, a.proc_id, _plan_id(a), a.batch_id, a.context_id, a.line, a.cpu_ms,
            a.wait_ms, 42, a.physical_reads, a.logical_reads, a.rows // 4, 1, 1, 2048, 0, a.rows, a.error,
            zlib.crc32(a.procedure.encode()) & 0x7FFFFFFF, 0, 1, a.statement_number, a.db, a.start, a.end, 0,
        )  # fmt: skip


MON_SYS_SQLTEXT = (
    I4("SPID"), I1("InstanceID"), I4("KPID"), I4("ServerUserID"), I4("BatchID"), I4("SequenceInBatch"),
    VC("SQLText", 255),
)  # fmt: skip


def _mon_sys_sqltext(env: Env) -> Iterable[Row]:
    texts = env.state.text_since(env.conn.text_pos)
    if texts:
        env.conn.text_pos = texts[-1].seq
    for t in texts:
        yield t.spid, 0, t.kpid, t.suid, t.batch_id, t.sequence, t.text


# ----------------------------------------------------------------- monTables & co
MON_TABLES = (
    I4("TableID"), I1("Columns"), I1("Parameters"), I4("Indicators"), I4("Size"), VC("TableName", 30),
    VC("Description", 368),
)  # fmt: skip
MON_TABLE_COLUMNS = (
    I4("TableID"), I4("ColumnID"), I4("TypeID"), I1("Precision"), I1("Scale"), I2("Length"),
    I4("Indicators"), VC("TableName", 30), VC("ColumnName", 30), VC("TypeName", 20), VC("Description", 768),
)  # fmt: skip

_QOT: tuple[tuple[str, Version], ...] = (("QueryOptimizationTime", (16, 0, 3)),)
_HOST: tuple[tuple[str, Version], ...] = (("HostName", (15, 7, 0)),)


def _mon_tables(env: Env) -> Iterable[Row]:
    version = parse_version(env.state.version)
    for tid, t in enumerate(MDA, 1):
        yield tid, len(t.visible(version)), 0, 1 if t.pipe else 0, 1, t.name, t.description


def _mon_table_columns(env: Env) -> Iterable[Row]:
    version = parse_version(env.state.version)
    for tid, t in enumerate(MDA, 1):
        for cid, (_, c) in enumerate(t.visible(version), 1):
            yield tid, cid, c.type_id, 0, 0, c.length, 0, t.name, c.name, c.type, None


def _mda(
    name: str,
    cols: Sequence[Column],
    rows: Callable[[Env], Iterable[Row]],
    text: str,
    *,
    pipe: bool = False,
    since: tuple[tuple[str, Version], ...] = (),
) -> Table:
    return Table("master", name, tuple(cols), rows, pipe, since, text)


MDA: tuple[Table, ...] = (
    _mda("monState", MON_STATE, _mon_state, "Server-wide state (readable with monitoring off)"),
    _mda("monProcess", MON_PROCESS, _mon_process, "One row per process (task)", since=_HOST),
    _mda("monProcessSQLText", MON_PROCESS_SQLTEXT, _mon_process_sqltext, "SQL text executing now"),
    _mda("monProcessStatement", MON_PROCESS_STATEMENT, _mon_process_statement, "Statements executing now",
         since=_QOT),
    _mda("monProcessProcedures", MON_PROCESS_PROCEDURES, _mon_process_procedures, "Procedure call stacks"),
    _mda("monSysStatement", MON_SYS_STATEMENT, _mon_sys_statement, "Recently finished statements (pipe)",
         pipe=True, since=_QOT),
    _mda("monSysSQLText", MON_SYS_SQLTEXT, _mon_sys_sqltext, "Recent SQL text (pipe)", pipe=True),
    _mda("monTables", MON_TABLES, _mon_tables, "The monitoring tables"),
    _mda("monTableColumns", MON_TABLE_COLUMNS, _mon_table_columns, "Columns of the monitoring tables"),
)  # fmt: skip
