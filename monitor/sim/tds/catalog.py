"""The objects in the simulated databases: tables and stored procedures with their source text.

``imx_prod`` (``imx``) holds the clinical application's tables and 111 procedures: the
workload's, the central letter search (``p_brev_sok_central_utskrift``), the nightly letter
batch (``p_brev_batch_nattkorning``) and generated ones.
Each application deployment the scenario records (e.g. ``IMX 7.1.0``) rewrites 37 of them,
always including the central letter search, which then gains ``set parallel_degree 4`` and
a ``(parallel 4)`` hint: what the vendor later found behind the crashes. Object ids stay
the same across a deployment (so ``monSysStatement.ProcedureID`` keeps resolving); the
changed procedures get the deployment's time as ``crdate``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from monitor.sim.state import Deployment
from monitor.sim.workload import BATCH_PROCEDURE, CATALOG, CRASH_INNER_SQL, CRASH_PROCEDURE, Procedure

BASE_LABEL = "IMX 7.0.4"
CHANGED_PER_DEPLOYMENT = 37
INSTALLED = datetime(2023, 6, 20, 9, 12, 44).timestamp()
APP_INSTALLED = datetime(2023, 11, 2, 21, 14, 7).timestamp()

SYSTEM_TABLES = (
    "sysobjects", "sysindexes", "syscolumns", "systypes", "sysprocedures", "syscomments", "syssegments",
    "syslogs", "sysprotects", "sysusers", "sysalternates", "sysdepends", "syskeys", "sysusermessages",
    "sysconstraints", "sysreferences", "syspartitions", "sysstatistics",
)  # fmt: skip
MASTER_TABLES = ("sysdatabases", "sysconfigures", "syscurconfigs", "syslogins", "sysdevices", "sysservers")
APP_TABLES = (
    "patient", "journal", "lab_result", "vardkontakt", "booking", "ordination", "anteckning", "remiss",
    "lakemedel", "brev", "avdelning", "personal", "app_feature_flags",
)  # fmt: skip
_NOUNS = (
    "avdelning", "personal", "recept", "vaccination", "diagnos", "atgard", "kallelse", "provsvar",
    "remissvar", "epikris", "vardplan", "larm", "intyg", "faktura", "schema", "resurs", "sal", "sang",
    "journalmall", "behorighet", "utskrift", "brevmall", "kontakt", "samtycke", "sparr", "vardhandelse",
)  # fmt: skip
_VERBS = ("get", "list", "save", "delete", "sok")
_PARAM_DECL = {
    "pnr": "@pnr char(13)", "avd": "@avd int", "fran": "@fran_datum datetime", "till": "@till_datum datetime",
    "datum": "@datum datetime", "kontakt": "@kontakt_id int", "lakemedel": "@lakemedel_id int",
    "dos": "@dos varchar(10)", "mall": "@mall varchar(30)", "status": "@status varchar(10)",
    "sokord": "@sokord varchar(40)", "login": "@login varchar(30)", "typ": "@utskriftstyp varchar(10)",
}  # fmt: skip
_VERB_PARAMS = {"get": ("pnr",), "list": ("avd", "fran"), "save": ("pnr", "avd"), "delete": ("pnr",)}


@dataclass(frozen=True, slots=True)
class DbObject:
    """A ``sysobjects`` row; ``type`` is padded to 2 characters as ASE does (``'P '``)."""

    id: int
    name: str
    type: str
    crdate: float
    text: str | None = None


def _generated() -> tuple[Procedure, ...]:
    taken = {p.name for p in (*CATALOG, CRASH_PROCEDURE, BATCH_PROCEDURE)}
    out: list[Procedure] = []
    step = 6400023  # 100 more ids after the workload's, all below 2**31 (object ids are int)
    next_id = CRASH_PROCEDURE.proc_id + 32000114
    for noun in _NOUNS:
        for verb in _VERBS:
            name = f"p_{noun}_{verb}"
            if name in taken or len(out) >= 100:
                continue
            params = _VERB_PARAMS.get(verb, ("sokord",))
            out.append(Procedure(name, next_id, "imx_prod", params, 60, (0, 5), (5, 50), 0))
            next_id += step
    return tuple(out)


APP_PROCEDURES: tuple[Procedure, ...] = (
    *(p for p in CATALOG if p.db == "imx_prod"),
    CRASH_PROCEDURE,
    BATCH_PROCEDURE,
    *_generated(),
)
AUDIT_PROCEDURES: tuple[Procedure, ...] = tuple(p for p in CATALOG if p.db == "imx_audit")


@lru_cache(maxsize=1024)
def procedure_text(proc: Procedure, label: str, parallel: bool) -> str:
    """The ``create procedure`` text of ``proc`` as deployed by release ``label``."""
    table = proc.name.removeprefix("p_").rsplit("_", 1)[0]
    decls = ",\n    ".join(_PARAM_DECL[p] for p in proc.params)
    lines = [
        f"create procedure dbo.{proc.name}",
        f"    {decls}",
        "as",
        "/*",
        f"** {proc.name} -- {label}",
        "** IMX clinical record system. Changes to this procedure need a release note.",
        "*/",
        "begin",
        "    set nocount on",
    ]
    if parallel:
        lines.append("    set parallel_degree 4  /* central printing: search all departments at once */")
    lines += ["    declare @rc int, @now datetime", "    select @now = getdate(), @rc = 0"]
    if proc is CRASH_PROCEDURE:
        body = CRASH_INNER_SQL
        if parallel:
            body = body.replace("from brev b, patient p", "from brev b (parallel 4), patient p")
        lines += ["    " + ln for ln in body.splitlines()]
    elif proc.name.endswith(("_save", "_delete")):
        verb = "update" if proc.name.endswith("_save") else "delete"
        lines += [
            f"    {verb} {table}",
            "       set andrad = @now" if verb == "update" else "",
            "     where pnr = @pnr",
        ]
    else:
        lines += [f"    select * from {table} t", "     where t.giltig_tom is null"]  # noqa: S608 - source text, never run
        if "pnr" in proc.params:
            lines.append("       and t.pnr = @pnr")
    if label != BASE_LABEL:
        lines.append(f"    /* {label}: audit of reads, new columns */")
    lines += [
        "    if @@error != 0",
        "    begin",
        f'        raiserror 20001 "{proc.name}: failed"',
        "        return 1",
        "    end",
        "    return 0",
        "end",
    ]
    return "\n".join(ln for ln in lines if ln) + "\n"


def _definitions(deployments: Sequence[Deployment]) -> dict[str, tuple[str, float, bool]]:
    """name -> (release label, crdate, parallel) after ``deployments`` (oldest first)."""
    defs = {p.name: (BASE_LABEL, APP_INSTALLED + i * 0.37, False) for i, p in enumerate(APP_PROCEDURES)}
    names = sorted(n for n in defs if n != CRASH_PROCEDURE.name)
    for d in deployments:
        picked = random.Random(d.what).sample(names, CHANGED_PER_DEPLOYMENT - 1)
        for name in (*picked, CRASH_PROCEDURE.name):
            defs[name] = (d.what, d.time, defs[name][2] or name == CRASH_PROCEDURE.name)
    return defs


def _tables(names: Sequence[str], first_id: int, kind: str, when: float) -> list[DbObject]:
    return [DbObject(first_id + 16000057 * i, n, kind, when) for i, n in enumerate(names)]


def objects(db: str, deployments: Sequence[Deployment], mda: Sequence[str] = ()) -> list[DbObject]:
    """The ``sysobjects`` rows of database ``db`` (with procedure texts), ordered by id."""
    out = _tables(SYSTEM_TABLES, 1, "S ", INSTALLED)
    if db == "master":
        out += _tables(MASTER_TABLES, 30, "S ", INSTALLED)
        out += _tables(mda, 1003003590, "U ", INSTALLED)
    elif db == "imx_prod":
        out += _tables(APP_TABLES, 16003088, "U ", APP_INSTALLED)
        defs = _definitions(deployments)
        for p in APP_PROCEDURES:
            label, crdate, parallel = defs[p.name]
            out.append(DbObject(p.proc_id, p.name, "P ", crdate, procedure_text(p, label, parallel)))
    elif db == "imx_audit":
        out += _tables(("login_audit",), 16003088, "U ", APP_INSTALLED)
        out += [
            DbObject(p.proc_id, p.name, "P ", APP_INSTALLED, procedure_text(p, BASE_LABEL, False))
            for p in AUDIT_PROCEDURES
        ]
    elif db == "sybsystemprocs":
        for i, name in enumerate(("sp_configure", "sp_datatype_info", "sp_shmdumpconfig")):
            text = f"create procedure {name}\nas\n/* system procedure (simulated) */\nreturn 0\n"
            out.append(DbObject(1200004 + 32000 * i, name, "P ", INSTALLED, text))
    return sorted(out, key=lambda o: o.id)


def comments(obj: DbObject) -> list[tuple[int, str]]:
    """``syscomments`` rows of an object: (colid, up to 255 characters of text), in order."""
    text = obj.text or ""
    return [(i // 255 + 1, text[i : i + 255]) for i in range(0, len(text), 255)]
