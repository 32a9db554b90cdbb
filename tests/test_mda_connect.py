"""The monitoring login: where the password comes from, what is refused, what errors say."""

from __future__ import annotations

import os
from pathlib import Path

import pyodbc
import pytest
from pydantic import ValidationError

from collectors.mda.connect import (
    OdbcError,
    Target,
    connection_string,
    open_connection,
    read_password,
    translate,
)
from monitor.config_mda import DatabaseConfig, MdaConfig
from monitor.errors import SourceError
from tests.mda_fake import FakeAse

pytestmark = pytest.mark.unit


def _secret_file(tmp_path: Path, mode: int, text: str = "sim-secret\n") -> Path:
    path = tmp_path / "ase.pw"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_private_password_file_is_used(tmp_path: Path) -> None:
    db = DatabaseConfig(host="h", password_file=_secret_file(tmp_path, 0o600))
    assert read_password(db, "mda:S") == "sim-secret"
    conn = open_connection(Target("S", "mda:S", db), FakeAse().connect)
    assert conn.timeout == 5  # the query timeout bounds every call


def test_a_group_or_world_readable_password_file_is_refused_at_config_time(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, 0o640)
    with pytest.raises(ValidationError) as e:
        DatabaseConfig(host="h", password_file=path)
    assert "readable or writable by group or others (mode 0640)" in str(e.value)
    assert "chmod 600" in str(e.value)


def test_a_password_file_made_readable_later_is_refused_at_connect(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, 0o600)
    db = DatabaseConfig(host="h", password_file=path)
    path.chmod(0o604)
    with pytest.raises(SourceError) as e:
        open_connection(Target("S", "mda:S", db), FakeAse().connect)
    assert "refusing the password file" in str(e.value) and str(path) in str(e.value)
    assert "sim-secret" not in str(e.value)


def test_an_unset_password_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PW", raising=False)
    db = DatabaseConfig(host="h", password_env="NO_SUCH_PW")
    with pytest.raises(SourceError, match="NO_SUCH_PW is unset or empty"):
        read_password(db, "mda:S")


def test_exactly_one_password_source_and_one_address(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of password_env and password_file"):
        DatabaseConfig(host="h")
    with pytest.raises(ValidationError, match="exactly one of dsn and host"):
        DatabaseConfig(host="h", dsn="ASE", password_env="X")
    with pytest.raises(ValidationError, match="not allowed in an ODBC string"):
        DatabaseConfig(host="h;Driver=evil", password_env="X")
    with pytest.raises(ValidationError, match="extra"):
        DatabaseConfig.model_validate({"host": "h", "password_env": "X", "password": "inline"})
    with pytest.raises(ValidationError, match="reconnect_backoff_max"):
        MdaConfig(reconnect_initial=10, reconnect_backoff_max=1)


def test_relative_password_file_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    _secret_file(tmp_path, 0o600)
    db = DatabaseConfig.model_validate({"host": "h", "password_file": "ase.pw"}, context={"base": tmp_path})
    assert db.password_file == tmp_path / "ase.pw"


def test_the_connection_string_pins_tds_5_and_braces_awkward_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = DatabaseConfig(host="10.0.0.5", port=4100, user="mon", password_env="X")
    cs = connection_string(db, "a;b}c")
    assert (
        cs
        == "Driver=FreeTDS;Server=10.0.0.5;Port=4100;TDS_Version=5.0;UID=mon;PWD={a;b}}c};APP=asewatch;ClientCharset=UTF-8"
    )
    dsn = DatabaseConfig(dsn="CLINIC1", password_env="X")
    assert connection_string(dsn, "pw").startswith("DSN=CLINIC1;TDS_Version=5.0;UID=asewatch;PWD=pw;")
    assert "PWD" not in repr(db) and "PWD" not in repr(Target("S", "mda:S", db))


def test_driver_errors_are_classified_and_scrubbed() -> None:
    lost = translate(
        pyodbc.Error("01000", "[01000] Unexpected EOF from the server (20017)"), "mda:S", "reading"
    )
    assert lost.lost and lost.sqlstate == "01000"
    timeout = translate(pyodbc.OperationalError("HYT00", "[HYT00] Timeout expired"), "mda:S", "reading")
    assert timeout.lost
    statement = translate(
        pyodbc.ProgrammingError("42S02", "[42S02] monFoo not found. (208)"), "mda:S", "reading"
    )
    assert not statement.lost
    echoed = translate(pyodbc.Error("HY000", "bad PWD=hunter2x here"), "mda:S", "login", "hunter2x")
    assert "hunter2x" not in str(echoed) and "***" in str(echoed)
    assert isinstance(echoed, OdbcError) and isinstance(echoed, SourceError)


def test_a_failed_login_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "not-the-password")
    db = DatabaseConfig(host="127.0.0.1", port=5000, password_env="PW")
    with pytest.raises(OdbcError) as e:
        open_connection(Target("CLINIC1", "mda:CLINIC1", db), FakeAse().connect)
    assert e.value.lost
    assert str(e.value) == (
        "mda:CLINIC1: login as asewatch@127.0.0.1:5000 failed: ProgrammingError 42000: "
        "[42000] [FreeTDS][SQL Server]Login failed. (4002) (SQLDriverConnect)"
    )
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no driver traceback to leak


def test_password_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file away")
    path = _secret_file(tmp_path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ValidationError, match="belongs to uid 65534"):
        DatabaseConfig(host="h", password_file=path)
