"""Relational state behind one small interface: SQLite by default, PostgreSQL by URL.

SQLite (one file per service under ``state_dir``) is the embedded mode; several replicas
of a service share state through PostgreSQL (``database_url`` / ``NEWSWATCH_DATABASE_URL``).
Schema changes are numbered steps recorded in ``newswatch_migrations``, applied once, in
order, under a lock so replicas starting together do not race. SQLAlchemy errors are
converted to StoreError here.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    create_engine,
    event,
    func,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.sql.elements import ColumnElement

from newswatch.shared.errors import NewswatchError


class StoreError(NewswatchError):
    """The state database failed; the caller's work is not recorded and must be retried.

    ``transient``: the database is unreachable, locked or timed out (wait and retry), as
    opposed to refusing this statement (a constraint, a value it cannot store).
    """

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


#: SQLAlchemy errors that mean "the database is away or busy", not "this statement is wrong".
_OUTAGES = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


def database_url(configured: SecretStr | str | None, state_dir: Path, service: str) -> str:
    """The configured URL (a secret: it may hold a password), else a SQLite file for this
    service in ``state_dir``."""
    if isinstance(configured, SecretStr):
        configured = configured.get_secret_value()
    if configured:
        return configured
    return f"sqlite:///{state_dir / f'{service}.sqlite3'}"


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs for concurrent service threads."""
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
                dbapi_connection.create_function(
                    SQLITE_BIT_DISTANCE, 2, _bit_distance, deterministic=True
                )  # see bit_distance
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin_immediate(conn: Connection) -> None:
                # Take the write lock at BEGIN: two writers then queue (busy timeout) instead
                # of both reading, then one failing to upgrade its lock.
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgres://")
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    except (SQLAlchemyError, OSError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot use database {redact(url)}: {exc}") from exc


SQLITE_BIT_DISTANCE = "nw_bit_distance"
_BITS_64 = (1 << 64) - 1


def _bit_distance(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else ((a ^ b) & _BITS_64).bit_count()


def bit_distance(
    conn: Connection, column: ColumnElement[Any], value: int | ColumnElement[Any]
) -> ColumnElement[int]:
    """The number of bits in which a BIGINT column differs from ``value``, worked out by the
    database, so a query can keep (and return) only the near rows instead of every row.

    SQLite calls a function registered on each connection (``make_engine``); PostgreSQL 14 and
    newer count the bits of the XOR as a bit string (``bit_count``), older ones count the
    ones of its text. BIGINTs are signed, so the XOR of two stored values is the signed form
    of the XOR of their unsigned values: the same bits.
    """
    if conn.dialect.name == "sqlite":
        return getattr(func, SQLITE_BIT_DISTANCE)(column, value, type_=Integer)  # type: ignore[no-any-return]
    other = literal(value, BigInteger) if isinstance(value, int) else value
    xor = cast(column.op("#")(other), postgresql.BIT(64))
    if (conn.dialect.server_version_info or (0,)) >= (14,):
        return func.bit_count(xor, type_=Integer)
    return func.length(func.replace(cast(xor, Text), "0", ""), type_=Integer)


def redact(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


_MIGRATIONS = Table(
    "newswatch_migrations",
    MetaData(),
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def migrate(engine: Engine, component: str, steps: Sequence[Sequence[str]]) -> int:
    """Apply ``steps[n:]`` where n is the recorded version; returns the new version."""
    with contextlib.suppress(SQLAlchemyError):  # created concurrently by another replica: fine
        _MIGRATIONS.create(engine, checkfirst=True)
    try:
        with _writer_lock(engine), engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:c))"), {"c": component})
            current = conn.execute(
                select(_MIGRATIONS.c.version).where(_MIGRATIONS.c.component == component)
            ).scalar_one_or_none()
            version = current or 0
            if version > len(steps):
                raise StoreError(
                    f"the {component} database has schema version {version}, newer than this newswatch "
                    f"knows ({len(steps)}): run the newer release, or restore the backup taken before it"
                )
            for number, statements in enumerate(steps[version:], start=version + 1):
                for statement in statements:
                    conn.execute(text(statement))
                version = number
            if current is None:
                conn.execute(_MIGRATIONS.insert().values(component=component, version=version))
            elif version != current:
                conn.execute(
                    _MIGRATIONS.update().where(_MIGRATIONS.c.component == component).values(version=version)
                )
            return version
    except SQLAlchemyError as exc:
        raise StoreError(f"migrating {component} schema failed: {exc}") from exc


def schema_version(engine: Engine, component: str) -> int:
    """The recorded schema version of ``component`` (0: none yet), without changing anything."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(_MIGRATIONS.name):
                return 0
            current = conn.execute(
                select(_MIGRATIONS.c.version).where(_MIGRATIONS.c.component == component)
            ).scalar_one_or_none()
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the {component} schema version failed: {exc}") from exc
    return int(current or 0)


#: Compiled-once statements by (dialect, kind, table, keys, columns): a statement object
#: reused is found in SQLAlchemy's compiled cache at once, where a new one must be built and
#: have its cache key worked out on every call (most of a small statement's cost).
_STATEMENTS: dict[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], Any] = {}


def _insert(
    conn: Connection,
    kind: str,
    table: Table,
    keys: Sequence[str],
    columns: Sequence[str],
    returning: str = "",
) -> Any:
    dialect_name = conn.dialect.name
    key = (dialect_name, kind + returning, table.name, tuple(keys), tuple(columns))
    statement = _STATEMENTS.get(key)
    if statement is None:
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        base = dialect.insert(table)
        if kind == "upsert":
            updates = {c: base.excluded[c] for c in columns if c not in keys}
            statement = base.on_conflict_do_update(index_elements=list(keys), set_=updates)
        else:
            statement = base.on_conflict_do_nothing(index_elements=list(keys))
        if returning:
            statement = statement.returning(table.c[returning])
        _STATEMENTS[key] = statement
    return statement


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, in the connection's dialect.

    Any number of rows go as one statement compiled once and executed for all of them
    (SQLAlchemy's "insertmanyvalues" batches them into multi-row VALUES as text): building a
    multi-row VALUES clause as an expression compiled a bound parameter object per value,
    0.75 s for 1,000 rows of 23 values.
    """
    if rows:
        conn.execute(_insert(conn, "upsert", table, keys, list(rows[0])), list(rows))


def insert_new(conn: Connection, table: Table, row: dict[str, Any], keys: Sequence[str]) -> None:
    """INSERT … ON CONFLICT (keys) DO NOTHING: the first writer wins."""
    conn.execute(_insert(conn, "new", table, keys, list(row)), [row])


def insert_new_many(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str], returning: str
) -> set[Any]:
    """INSERT … ON CONFLICT (keys) DO NOTHING RETURNING ``returning`` for many rows at once:
    the values of ``returning`` of the rows this statement inserted (not those that existed).

    Both databases answer RETURNING for the rows really inserted (SQLite 3.35+), so a caller
    learns which of its rows are new without a read per row; on PostgreSQL a concurrent
    transaction inserting the same key makes this one wait, then skip the row.
    """
    if not rows:
        return set()
    statement = _insert(conn, "new", table, keys, list(rows[0]), returning)
    return {row[0] for row in conn.execute(statement, list(rows))}


#: One writer at a time per SQLite database in this process (see ``transaction``).
_SQLITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SQLITE_LOCKS_GUARD = threading.Lock()


def _writer_lock(engine: Engine) -> contextlib.AbstractContextManager[object]:
    """SQLite lets one transaction write at a time; a second one that finds the database
    locked sleeps in SQLite's busy handler (1, 2, 5 … 100 ms steps) and tries again. With
    several threads of one service writing (intake, claims, outcomes), those sleeps were
    most of a batch's time. So this process's transactions on a SQLite database take turns
    on a lock instead, and wake as soon as the previous one ends. PostgreSQL needs none."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    with _SQLITE_LOCKS_GUARD:
        lock = _SQLITE_LOCKS.get(engine)
        if lock is None:
            lock = _SQLITE_LOCKS[engine] = threading.RLock()
    return lock


@contextlib.contextmanager
def transaction(engine: Engine, what: str) -> Iterator[Connection]:
    """A transaction whose database errors become StoreError naming ``what``."""
    try:
        with _writer_lock(engine), engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(
            f"{what} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            transient=isinstance(exc, _OUTAGES),
        ) from exc
