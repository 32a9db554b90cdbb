"""Every real errorlog sample in ../shared/corpus/errorlogs/, parsed with exact expectations."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from collectors.errorlog import ErrorlogParser, parse_file
from monitor.events import ConfigChanged, CrashBlock, ErrorlogError, ServerBooted, ServerShutdown

pytestmark = pytest.mark.unit


def parse(corpus: Path, name: str) -> tuple[list[object], ErrorlogParser]:
    parser = ErrorlogParser()
    return list(parse_file(corpus / name, parser)), parser


def only(records: list[object], kind: type) -> list:
    return [r for r in records if isinstance(r, kind)]


def test_every_corpus_file_is_covered_by_a_test(corpus: Path) -> None:
    names = {p.name for p in corpus.glob("*.log")}
    tested = {
        "cn_dba_notes_ase_1105_3475_2008.log",
        "dbxtune_config_option_changed_2019.log",
        "dbxtune_sigsegv_query_text_2018.log",
        "dbxtune_timeslice_501_checkpoint_2021.log",
        "freetds_issue55_error1621_ase_2016.log",
        "gawk_script_comment_ase160sp04pl03_sysam_2024.log",
        "sap_blog_polite_shutdown_2013.log",
        "ubuntuforums_ase1253_express_startup_shmem_fail_2005.log",
    }
    assert names == tested, "a new corpus sample needs its own expectations here"


def test_sigsegv_query_text(corpus: Path) -> None:
    records, parser = parse(corpus, "dbxtune_sigsegv_query_text_2018.log")
    assert parser.lines == 58
    assert parser.unparsed_lines == 0
    [crash] = records
    assert isinstance(crash, CrashBlock)
    assert crash.time == datetime(2018, 5, 4, 19, 37, 1, 480000)
    assert (crash.kind, crash.signal) == ("signal", 11)
    assert (crash.thread, crash.engine, crash.family, crash.spid) == (4, None, 0, 308)
    assert (crash.kpid, crash.suid) == (732758348, 1)
    assert crash.address_function == "query_text"
    assert crash.sql == "exec sp_showplan 86, null, null, null, 'long'"
    assert (crash.statement_number, crash.line_number) == (57, 139)
    assert crash.sql_text == (
        "exec sp_showplan 86, null, null, null, 'long'",
        "select @a = query_text(@spid)",
    )
    assert (crash.curdb, crash.lasterror, crash.transtate, crash.curcmd) == (1, 0, 1, 193)
    assert (crash.program, crash.hostname, crash.login) == ("AseTune-nogui", "dbxtune", "sa")
    assert crash.procedure == "sp_showplan"
    assert crash.frames == (
        "pcstkwalk", "ucstkgentrace", "ucbacktrace", "terminate_process", "kisignal",
        "query_text", "LeRun", "LeEvals::LeEvRun", "LeScalarOp::_LeOpNext", "LeEmitNoSndOp::_LeOpNext",
        "LePlanNext", "exec_lava", "s_execute", "sequencer", "execproc", "s_execute", "sequencer",
        "tdsrecv_language", "conn_hdlr",
    )  # fmt: skip
    assert crash.handlers == (
        "le_execerr", "hdl_stack", "s_handle", "hdl_stack", "s_handle", "ut_handle",
    )  # fmt: skip
    assert crash.complete is True
    assert crash.server_terminated is False
    assert len(crash.signature) == 16


def test_timeslice_checkpoint(corpus: Path) -> None:
    records, parser = parse(corpus, "dbxtune_timeslice_501_checkpoint_2021.log")
    assert parser.lines == 42
    [crash] = records
    assert isinstance(crash, CrashBlock)
    assert (crash.kind, crash.signal) == ("timeslice", None)
    assert (crash.spid, crash.kpid, crash.suid) == (451, 405078453, 0)
    assert crash.address_function == "pausenonatomic"
    assert crash.sql is None
    assert crash.sql_text == ()  # "[no text]": a system task
    assert (crash.login, crash.hostname, crash.program) == (None, None, None)
    assert (crash.curdb, crash.curcmd) == (5, 318)
    assert crash.frames == (
        "pcstkwalk", "ucstkgentrace", "ucbacktrace", "terminate_process", "kitermproc", "(null)",
        "des_checkpoint", "checkpoint", "ckpt_process_dbs", "ckptproc",
    )  # fmt: skip
    assert crash.handlers == ("des__errhdl", "hdl_backout_msg", "ckptproc_backout")
    assert crash.complete and not crash.server_terminated
    assert crash.procedure is None


def test_config_option_changed(corpus: Path) -> None:
    records, _ = parse(corpus, "dbxtune_config_option_changed_2019.log")
    assert records == [
        ConfigChanged(datetime(2019, 3, 26, 1, 41, 39, 170000), 36, "auditing", "sa", "0", "1", 0)
    ]


def test_error_1621_pairs(corpus: Path) -> None:
    records, parser = parse(corpus, "freetds_issue55_error1621_ase_2016.log")
    errors = only(records, ErrorlogError)
    assert len(records) == len(errors) == 4
    assert [(e.number, e.severity, e.state, e.spid) for e in errors] == [
        (1621, 18, 1, 260), (1621, 18, 1, 352), (1621, 18, 1, 440), (1621, 18, 1, 312),
    ]  # fmt: skip
    assert [e.message for e in errors] == ["Type '12' not allowed before login."] * 3 + [
        "Type '10' not allowed before login."
    ]
    assert parser.lines == 8


def test_1105_and_3475_three_field_prefix(corpus: Path) -> None:
    records, _ = parse(corpus, "cn_dba_notes_ase_1105_3475_2008.log")
    errors = only(records, ErrorlogError)
    assert [(e.number, e.severity, e.state) for e in errors] == [(1105, 17, 3), (3475, 21, 7)]
    assert (errors[0].thread, errors[0].family, errors[0].spid) == (0, 0, 1)
    assert errors[0].message.startswith("Can't allocate space for object 'syslogs'")


def test_polite_shutdown(corpus: Path) -> None:
    records, _ = parse(corpus, "sap_blog_polite_shutdown_2013.log")
    assert records == [ServerShutdown(datetime(2013, 7, 22, 9, 33, 58, 100000), "requested", "sa", 0)]


def test_sysam_boot(corpus: Path) -> None:
    records, _ = parse(corpus, "gawk_script_comment_ase160sp04pl03_sysam_2024.log")
    [boot] = records
    assert isinstance(boot, ServerBooted)
    assert boot.time == datetime(2024, 12, 14, 2, 31, 19, 810000)
    assert (boot.version, boot.failed) == (None, False)


def test_express_boot_failure(corpus: Path) -> None:
    records, parser = parse(corpus, "ubuntuforums_ase1253_express_startup_shmem_fail_2005.log")
    [boot] = records
    assert isinstance(boot, ServerBooted)
    assert boot.failed is True
    assert boot.failure == "os_create_region: can't allocate 41359360 bytes"
    assert boot.version is None  # the Express banner is not a version string: never guessed
    assert parser.lines == 8 and parser.unparsed_lines == 0
