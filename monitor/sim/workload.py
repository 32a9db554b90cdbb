"""The workload: stored-procedure calls of a clinical record system on many spids and logins.

Statement parameters carry Swedish personal identity numbers from the official test
series (``19121212-1212`` and its valid-Luhn neighbours), so that every path that must
redact personal data meets some. Records go into :class:`~monitor.sim.state.SimState`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.sim.state import Session, SimState, StatementRecord

FIRST_USER_SPID = 14
ADMIN_SPID = 12
WORKER_SPIDS = range(200, 400)
IN_FLIGHT = 3  # calls per tick still executing until the next tick (monProcessStatement shows them)
MAX_WORKERS_PER_CALL = 32  # worker tasks one parallel call starts (ASE caps them by worker processes)
MAX_LINGERING = 100  # finished workers kept connected until the next tick (half the worker spids)


def luhn_digit(digits: str) -> int:
    """The Luhn check digit Swedish personal identity numbers use (over YYMMDDNNN).

    >>> luhn_digit("121212121")
    2
    """
    total = 0
    for i, ch in enumerate(digits):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return (10 - total % 10) % 10


def personnummer(serial: int) -> str:
    """A valid test personal identity number born 1912-12-12 with birth number ``serial`` (0-999).

    >>> personnummer(121)
    '19121212-1212'
    """
    base = f"121212{serial:03d}"
    return f"19121212-{serial:03d}{luhn_digit(base)}"


@dataclass(frozen=True, slots=True)
class Procedure:
    """A stored procedure of the application and how heavy one call of it is."""

    name: str
    proc_id: int
    db: str
    params: tuple[str, ...]
    lines: int
    cpu_ms: tuple[int, int]
    reads: tuple[int, int]
    weight: int
    parallel: bool = False


DBIDS = {"imx_prod": 4, "imx_audit": 5}

CATALOG: tuple[Procedure, ...] = (
    Procedure("p_patient_get", 1104003934, "imx_prod", ("pnr", "avd"), 88, (0, 3), (4, 40), 30),
    Procedure(
        "p_journal_read", 1136004048, "imx_prod", ("pnr", "fran", "till"), 412, (2, 40), (60, 900), 20, True
    ),
    Procedure("p_lab_result_list", 1168004162, "imx_prod", ("pnr", "fran"), 173, (1, 15), (20, 300), 15),
    Procedure("p_vardkontakt_get", 1200004276, "imx_prod", ("pnr", "kontakt"), 95, (0, 4), (6, 50), 8),
    Procedure("p_booking_list", 1232004390, "imx_prod", ("avd", "datum"), 210, (1, 20), (30, 500), 10, True),
    Procedure(
        "p_ordination_save", 1264004504, "imx_prod", ("pnr", "lakemedel", "dos"), 356, (2, 12), (15, 120), 6
    ),
    Procedure("p_anteckning_save", 1296004618, "imx_prod", ("pnr", "avd", "mall"), 289, (2, 10), (12, 90), 5),
    Procedure("p_remiss_list", 1328004732, "imx_prod", ("avd", "status"), 141, (1, 9), (20, 260), 5),
    Procedure("p_lakemedel_sok", 1360004846, "imx_prod", ("sokord",), 64, (0, 6), (10, 180), 4),
    Procedure("p_login_audit", 1392004960, "imx_audit", ("login",), 47, (0, 2), (3, 12), 2),
)

CRASH_PROCEDURE = Procedure(
    "p_brev_sok_central_utskrift",
    1424005074,
    "imx_prod",
    ("avd", "fran", "typ", "pnr"),
    518,
    (40, 400),
    (2000, 40000),
    0,
    True,
)

# The nightly letter batch: heavy, never in the background, run by imx_batch as scheduled calls.
BATCH_PROCEDURE = Procedure(
    "p_brev_batch_nattkorning", 1440005131, "imx_prod", ("avd", "fran"), 940, (50, 300), (5000, 60000), 0
)

PROCEDURES = {p.name: p for p in (*CATALOG, CRASH_PROCEDURE, BATCH_PROCEDURE)}


def procedure_named(name: str) -> Procedure:
    """The catalog's procedure ``name``, or a light one of that name (a scenario may call any).

    >>> procedure_named("p_patient_get").weight, procedure_named("p_x").name
    (30, 'p_x')
    """
    light = Procedure(name, 1500000000 + len(name), "imx_prod", ("pnr",), 100, (1, 10), (10, 100), 0)
    return PROCEDURES.get(name, light)


# The parallel search inside p_brev_sok_central_utskrift (statement 14 at line 233).
CRASH_INNER_SQL = (
    "select b.brev_id, b.pnr, b.skapad, b.mall_id, p.efternamn, p.fornamn\n"
    "from brev b, patient p\n"
    "where b.pnr = p.pnr and b.utskrift_central = 1 and b.avd_id = @avd\n"
    "  and b.skapad >= @fran_datum\n"
    "order by b.skapad"
)
CRASH_STATEMENT, CRASH_LINE = 14, 233

CLINICAL_LOGINS: tuple[tuple[str, int], ...] = (
    *((f"vardpersonal{i:02d}", 1100 + i) for i in range(1, 13)),
    ("lakare_anna", 1201),
    ("lakare_erik", 1202),
    ("lakare_sofia", 1203),
    ("ssk_maria", 1301),
    ("ssk_johan", 1302),
    ("usk_lena", 1401),
    ("sekr_karin", 1501),
)
SERVICE_LOGINS: tuple[tuple[str, int, str, str], ...] = (
    ("imx_batch", 1901, "app-imx-01", "IMX Batch"),
    ("imx_integration", 1902, "int-imx-02", "IMX Integration"),
)
WORDS = ("waran", "alvedon", "metformin", "insulin", "furix", "trombyl")
MALLAR = ("INSKRIVNING", "DAGANTECKNING", "EPIKRIS", "OPERATION")


@dataclass(frozen=True, slots=True)
class Topology:
    """Engines and how they show in the errorlog's thread field.

    Threaded mode: engine ``e`` runs on OS thread ``e + 2`` (threads 0 and 1 are the main
    and the network threads). Process mode: the thread field is the engine number.
    """

    engines: int
    process_mode: bool

    def thread(self, engine: int) -> int:
        """The errorlog thread id for ``engine``."""
        return engine if self.process_mode else engine + 2


class Workload:
    """Generates sessions and statements into a :class:`SimState`. Used from one thread."""

    def __init__(self, state: SimState, rng: random.Random, topology: Topology, sessions: int) -> None:
        self.state = state
        self.rng = rng
        self.topology = topology
        self._kpid = rng.randrange(0x10000000, 0x30000000)
        self._batch: dict[int, int] = {}
        self._in_flight: list[StatementRecord] = []
        self._lingering: list[int] = []  # worker spids of this tick's parallel calls
        self._patients = ["19121212-1212", *(personnummer(s) for s in rng.sample(range(1000), 300))]
        self.admin = self._session(ADMIN_SPID, ("sa", 1), "dbadm01", "isql")
        state.connect(self.admin)
        for spid in range(FIRST_USER_SPID, FIRST_USER_SPID + sessions):
            state.connect(self.new_session(spid))

    # ------------------------------------------------------------------ sessions
    def next_kpid(self) -> int:
        """A fresh kernel process id, increasing like ASE's."""
        self._kpid += self.rng.randrange(0x10000, 0x90000)
        if self._kpid > 0x7F000000:  # kpids are int columns in the MDA tables: wrap, never overflow
            self._kpid = self.rng.randrange(0x10000000, 0x30000000)
        return self._kpid

    def _session(self, spid: int, who: tuple[str, int], host: str, program: str, family: int = 0) -> Session:
        return Session(
            spid=spid,
            kpid=self.next_kpid(),
            login=who[0],
            suid=who[1],
            host=host,
            program=program,
            db="imx_prod" if who[0] != "sa" else "master",
            dbid=4 if who[0] != "sa" else 1,
            engine=spid % self.topology.engines,
            family=family,
            connected_at=time.time(),
        )

    def new_session(self, spid: int, login: str | None = None) -> Session:
        """A connection on ``spid``: as ``login`` if given, else a random (mostly clinical) user."""
        for name, suid, host, program in SERVICE_LOGINS:
            if login == name or (login is None and self.rng.random() < 0.05):
                return self._session(spid, (name, suid), host, program)
        if login is None:
            who = self.rng.choice(CLINICAL_LOGINS)
        else:
            who = next(
                (w for w in CLINICAL_LOGINS if w[0] == login), (login, 1600 + sum(map(ord, login)) % 400)
            )
        if self.rng.random() < 0.3:
            host = f"citrix-imx-{self.rng.randrange(1, 9):02d}"
        else:
            host = f"ws-avd{self.rng.randrange(1, 40):02d}-{self.rng.randrange(1, 200):03d}"
        return self._session(spid, who, host, "IMX Klient")

    def user_session(self, login: str | None = None, program: str | None = None) -> Session:
        """A connected user session; with ``login`` (and ``program``), one of that login's from that
        program, connecting one if there is none."""
        sessions = [s for s in self.state.sessions() if FIRST_USER_SPID <= s.spid < WORKER_SPIDS.start]
        if login is None and program is None:
            return self.rng.choice(sessions)
        mine = [s for s in sessions if login in (None, s.login) and program in (None, s.program)]
        if mine:
            return self.rng.choice(mine)
        taken = {s.spid for s in self.state.sessions()}
        spid = next(s for s in range(FIRST_USER_SPID, WORKER_SPIDS.start) if s not in taken)
        session = self.new_session(spid, login)
        session = dataclasses.replace(session, program=program) if program else session
        self.state.connect(session)
        return session

    def reconnect(self, spid: int) -> Session:
        """Replace the session on ``spid`` by a fresh connection (after a client dropped)."""
        self.state.disconnect(spid)
        session = self.new_session(spid)
        self.state.connect(session)
        return session

    def worker(self, parent: Session) -> Session:
        """A parallel worker task of ``parent``: its own spid and kpid, family = parent spid."""
        taken = {s.spid for s in self.state.sessions()}
        spid = next(s for s in WORKER_SPIDS if s not in taken)
        w = Session(
            spid=spid,
            kpid=self.next_kpid(),
            login=parent.login,
            suid=parent.suid,
            host=parent.host,
            program=parent.program,
            db=parent.db,
            dbid=parent.dbid,
            engine=self.rng.randrange(self.topology.engines),
            family=parent.spid,
            connected_at=time.time(),
        )
        self.state.connect(w)
        return w

    # ---------------------------------------------------------------- statements
    def sql(self, proc: Procedure) -> str:
        """An ``exec`` of ``proc`` with realistic literal parameters."""
        return f"exec {proc.name} " + ", ".join(self._param(p) for p in proc.params)

    def _param(self, kind: str) -> str:
        rng = self.rng
        today = date.today()
        match kind:
            case "pnr":
                return f"@pnr = '{rng.choice(self._patients)}'"
            case "avd":
                return f"@avd = {rng.randrange(1, 40)}"
            case "fran":
                return f"@fran_datum = '{today - timedelta(days=rng.randrange(1, 400)):%Y-%m-%d}'"
            case "till":
                return f"@till_datum = '{today:%Y-%m-%d}'"
            case "datum":
                return f"@datum = '{today + timedelta(days=rng.randrange(0, 14)):%Y-%m-%d}'"
            case "kontakt":
                return f"@kontakt_id = {rng.randrange(1_000_000, 9_999_999)}"
            case "lakemedel":
                return f"@lakemedel_id = {rng.randrange(10_000, 99_999)}"
            case "dos":
                return f"@dos = '{rng.randrange(1, 4)}x{rng.randrange(1, 4)}'"
            case "mall":
                return f"@mall = '{rng.choice(MALLAR)}'"
            case "status":
                return f"@status = '{rng.choice(('NY', 'SKICKAD', 'BESVARAD'))}'"
            case "sokord":
                return f"@sokord = '{rng.choice(WORDS)}'"
            case "login":
                return f"@login = '{rng.choice(CLINICAL_LOGINS)[0]}'"
            case "typ":
                return "@utskriftstyp = 'CENTRAL'"
        raise ValueError(f"unknown parameter kind {kind!r}")

    def statement(
        self, session: Session, proc: Procedure, sql: str, *, running: bool = False, line: int | None = None
    ) -> StatementRecord:
        """A statement record of ``proc`` on ``session`` ending now (or still running), at ``line``
        (default: the crash line while running, else a random one)."""
        rng = self.rng
        now = time.time()
        cpu = rng.randint(*proc.cpu_ms)
        wait = rng.randint(0, 5)
        batch = self._batch[session.spid] = self._batch.get(session.spid, 0) + 1
        if line is None:
            line = CRASH_LINE if running else rng.randrange(1, proc.lines)
        return StatementRecord(
            seq=self.state.next_seq(),
            spid=session.spid,
            kpid=session.kpid,
            family=session.family,
            login=session.login,
            host=session.host,
            program=session.program,
            db=proc.db,
            dbid=DBIDS[proc.db],
            procedure=proc.name,
            proc_id=proc.proc_id,
            line=line,
            statement_number=CRASH_STATEMENT if running else max(1, line // 12),
            batch_id=batch,
            context_id=1,
            start=now - (cpu + wait) / 1000.0,
            end=None if running else now,
            cpu_ms=cpu,
            wait_ms=wait,
            logical_reads=rng.randint(*proc.reads),
            physical_reads=rng.randint(0, 3),
            rows=rng.randint(0, 50),
            error=0,
            sql=sql,
        )

    def run_body(
        self, proc: Procedure, session: Session, sql: str, n: int, first: Sequence[Procedure] = ()
    ) -> None:
        """Record on ``session``, back to back and ending now: one call of each of ``first``
        (what the user did just before, each its own batch), a pause of 0.3-1.5 s, then
        statements 1..``n`` of ``proc``'s body as one batch of ``sql``, in line order below
        the crash line. The batch's text enters the text pipe once, as in ASE."""
        calls = [self.statement(session, p, self.sql(p)) for p in first]
        lines = sorted(self.rng.randrange(1, min(proc.lines, CRASH_LINE)) for _ in range(n))
        body = [self.statement(session, proc, sql, line=ln) for ln in lines]
        pause = self.rng.uniform(0.3, 1.5) if calls else 0.0
        t = time.time() - pause - sum(r.cpu_ms + r.wait_ms for r in (*calls, *body)) / 1000.0
        body = [
            dataclasses.replace(r, statement_number=i + 1, batch_id=body[0].batch_id)
            for i, r in enumerate(body)
        ]
        for i, r in enumerate((*calls, *body)):
            t += pause if i == len(calls) else 0.0
            took = (r.cpu_ms + r.wait_ms) / 1000.0
            self.state.record(dataclasses.replace(r, start=t, end=t + took), text=i <= len(calls))
            t += took

    def run_call(self, proc: Procedure, session: Session) -> StatementRecord:
        """Execute one call to completion; with parallelism on, its workers run and finish too."""
        stmt = self.statement(session, proc, self.sql(proc))
        degree = int(self.state.config().get("max parallel degree", "1"))
        if proc.parallel and degree > 1 and self.rng.random() < 0.1:
            # The workers stay connected until the next tick, so monProcess can show them with
            # FamilyID = the parent spid and the parent's NumChildren (bounded: spids are finite).
            linger = len(self._lingering) < MAX_LINGERING
            for _ in range(min(degree, MAX_WORKERS_PER_CALL)):
                w = self.worker(session)
                self.state.record(self.statement(w, proc, stmt.sql))
                if linger:
                    self._lingering.append(w.spid)
                else:
                    self.state.disconnect(w.spid)
        self.state.record(stmt)
        return stmt

    def background(self, n: int) -> None:
        """Run ``n`` background calls on random sessions (never the crashing procedure).

        The calls of the previous tick that were left executing finish first; up to
        ``IN_FLIGHT`` serial calls of this tick stay executing until the next one, so that
        ``monProcessStatement`` / ``monProcessSQLText`` have something to show.
        """
        for stmt in self._in_flight:
            self.state.record(stmt)
        self._in_flight.clear()
        for spid in self._lingering:
            self.state.disconnect(spid)
        self._lingering.clear()
        sessions = [s for s in self.state.sessions() if FIRST_USER_SPID <= s.spid < WORKER_SPIDS.start]
        procs = self.rng.choices(CATALOG, weights=[p.weight for p in CATALOG], k=n)
        busy: set[int] = set()
        for proc in procs:
            session = self.rng.choice(sessions)
            if len(self._in_flight) < IN_FLIGHT and not proc.parallel and session.spid not in busy:
                busy.add(session.spid)
                stmt = self.statement(session, proc, self.sql(proc))
                self.state.begin(dataclasses.replace(stmt, end=None))
                self._in_flight.append(stmt)
            else:
                self.run_call(proc, session)
