"""Migrations from monitor/migrations/*.sql: split into whole statements, numbered without gaps."""

from __future__ import annotations

import sqlite3

import pytest

from monitor import store_schema

pytestmark = pytest.mark.unit


def test_split_keeps_triggers_whole_and_drops_comments() -> None:
    sql = """-- a comment
CREATE TABLE a (x INTEGER);
CREATE TRIGGER t BEFORE UPDATE ON a
BEGIN SELECT RAISE(ABORT, 'no; really'); END;
-- trailing comment
"""
    parts = store_schema._split(sql)
    assert len(parts) == 2
    assert parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")
    conn = sqlite3.connect(":memory:")
    for p in parts:
        conn.execute(p)


def test_an_unfinished_statement_is_refused() -> None:
    with pytest.raises(ValueError, match="incomplete"):
        store_schema._split("CREATE TABLE a (x INTEGER")


def test_versions_are_contiguous_and_schema_version_is_the_last() -> None:
    versions = [m.version for m in store_schema.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == store_schema.SCHEMA_VERSION
