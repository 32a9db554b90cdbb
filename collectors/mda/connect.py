"""The monitoring connection: an ODBC login to ASE (pyodbc + FreeTDS, TDS 5.0), autocommit, bounded.

The password is read at each connect from an environment variable or a private file
(mode 0600, owned by the agent's user) and lives only in the connection string handed
to the driver. It is never kept in an attribute, a log line, an error or a repr; any
driver message that happened to echo it is scrubbed before it goes further.

Errors are translated once, here: :class:`OdbcError` says whether the connection is
lost (reconnect) or only the statement failed (the connection stays usable), with the
SQLSTATE and the driver's message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyodbc

from monitor.config_mda import DatabaseConfig, check_password_file
from monitor.errors import SourceError

# SQLSTATEs of a failed statement on a live connection (syntax, missing object, permission).
_STATEMENT_STATES = ("42", "37", "22", "23", "21", "HY010")


class Cursor(Protocol):
    """The part of a DB-API / pyodbc cursor the sampler uses."""

    description: Any

    def execute(self, sql: str) -> Any: ...
    def fetchall(self) -> Sequence[Sequence[Any]]: ...
    def close(self) -> None: ...


class Connection(Protocol):
    """The part of a pyodbc connection the sampler uses (``timeout`` is the query timeout, s)."""

    timeout: int

    def cursor(self) -> Cursor: ...
    def close(self) -> None: ...


Connect = Callable[..., Connection]


class OdbcError(SourceError):
    """An ODBC call failed. ``lost`` is True when the connection must be re-opened
    (communication failure, timeout, login failure); False when only the statement
    failed. ``sqlstate`` is the driver's SQLSTATE ('' when unknown)."""

    def __init__(self, collector: str, reason: str, *, sqlstate: str, lost: bool) -> None:
        super().__init__(collector, reason)
        self.sqlstate = sqlstate
        self.lost = lost


@dataclass(frozen=True, slots=True)
class Target:
    """Where the connection goes, without the password (safe to log): ``describe()``."""

    server: str
    collector: str
    db: DatabaseConfig

    def describe(self) -> str:
        """``user@host:port`` or ``user@DSN=name``, for messages."""
        where = f"DSN={self.db.dsn}" if self.db.dsn else f"{self.db.host}:{self.db.port}"
        return f"{self.db.user}@{where}"


def read_password(db: DatabaseConfig, collector: str) -> str:
    """The password from ``password_env`` or ``password_file`` (first line, stripped).

    Raises SourceError naming the variable or the file (never the value) when it is
    unset, empty, unreadable, or the file is readable by group or others.
    """
    if db.password_env is not None:
        value = os.environ.get(db.password_env)
        if not value:
            raise SourceError(collector, f"the password variable {db.password_env} is unset or empty")
        return value
    path = db.password_file
    if path is None:  # the config validator makes this impossible
        raise SourceError(collector, "no password_env or password_file configured")
    problem = check_password_file(path)
    if problem:
        raise SourceError(collector, f"refusing the password file: {problem}", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(collector, f"cannot read the password file: {exc}", path=str(path)) from None
    value = lines[0].strip() if lines else ""
    if not value:
        raise SourceError(collector, "the password file is empty", path=str(path))
    return value


def _quote(value: str) -> str:
    """An ODBC attribute value, braced when it holds a character that would end it."""
    if any(c in value for c in ";{}= ") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def connection_string(db: DatabaseConfig, password: str) -> str:
    """The ODBC connection string (holds the password: pass it to the driver, never keep it).

    >>> from monitor.config_mda import DatabaseConfig
    >>> db = DatabaseConfig(host="127.0.0.1", port=5000, user="mon", password_env="ASE_PW")
    >>> connection_string(db, "p;w")
    'Driver=FreeTDS;Server=127.0.0.1;Port=5000;TDS_Version=5.0;UID=mon;PWD={p;w};APP=asewatch;ClientCharset=UTF-8'
    """
    parts = [f"DSN={db.dsn}"] if db.dsn else [f"Driver={db.driver}", f"Server={db.host}", f"Port={db.port}"]
    parts += [
        f"TDS_Version={db.tds_version}",
        f"UID={db.user}",
        f"PWD={_quote(password)}",
        f"APP={db.app}",
        f"ClientCharset={db.charset}",
    ]
    return ";".join(parts)


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


def translate(exc: BaseException, collector: str, what: str, secret: str | None = None) -> OdbcError:
    """The :class:`OdbcError` for a driver exception raised while doing ``what``.

    pyodbc reports a dropped socket as a plain ``pyodbc.Error`` (SQLSTATE 01000, FreeTDS
    20017) and only the next call as 08S01, so anything that is not a statement error
    on a live connection counts as a lost connection.
    """
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    state = str(args[0]) if len(args) >= 2 and isinstance(args[0], str) else ""
    message = str(args[1]) if len(args) >= 2 else str(exc)
    message = scrub(" ".join(message.split()), secret)
    statement_error = isinstance(exc, pyodbc.ProgrammingError | pyodbc.IntegrityError | pyodbc.DataError) or (
        bool(state) and state.startswith(_STATEMENT_STATES)
    )
    lost = not statement_error
    if state in ("HYT00", "HYT01"):
        lost = True
    kind = type(exc).__name__
    return OdbcError(collector, f"{what}: {kind} {state or '?'}: {message}", sqlstate=state, lost=lost)


def open_connection(target: Target, connect: Connect) -> Connection:
    """Log in (autocommit, login timeout) and set the query timeout; return the connection.

    Raises SourceError when the password cannot be read, OdbcError (``lost=True``)
    when the login fails: the message names the user and server, never the password.
    """
    db = target.db
    password = read_password(db, target.collector)
    try:
        conn = connect(
            connection_string(db, password), autocommit=True, timeout=max(1, round(db.login_timeout))
        )
    except Exception as exc:  # noqa: BLE001 - any driver failure is translated here, once
        failure = translate(exc, target.collector, f"login as {target.describe()} failed", password)
        failure.lost = True
        raise failure from None
    try:
        # pyodbc's timeout is whole seconds; 0 would mean "wait for ever".
        conn.timeout = max(1, round(db.query_timeout))
    except Exception as exc:  # noqa: BLE001 - as above
        close_quietly(conn)
        raise translate(exc, target.collector, "setting the query timeout", password) from None
    return conn


def close_quietly(conn: Connection) -> None:
    """Close ``conn``, ignoring errors (a dead connection may refuse to close; it is dropped anyway)."""
    with contextlib.suppress(Exception):
        conn.close()
