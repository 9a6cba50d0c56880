"""Checks that the tables the migrations create are the ``Table`` declarations (each schema is
written twice: raw DDL steps for upgrades, SQLAlchemy tables for queries)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Table, inspect
from sqlalchemy.engine import Engine


def assert_declared(engine: Engine, tables: Iterable[Table]) -> None:
    """Column names, nullability and primary keys match, table by table."""
    inspector = inspect(engine)
    for table in tables:
        made = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(made) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            if column.primary_key:  # SQLite reports a text primary key as nullable
                continue
            assert made[column.name]["nullable"] == column.nullable, f"{table.name}.{column.name} nullable"
        primary = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert set(primary) == {c.name for c in table.primary_key.columns}, table.name
