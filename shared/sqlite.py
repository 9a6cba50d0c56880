"""Opening the services' local SQLite state files the same way everywhere."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from newswatch.shared.errors import NewswatchError


def open_sqlite(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (creating) ``path`` in WAL mode with ``schema`` applied.

    Autocommit mode (``isolation_level=None``): each statement commits on its own unless the
    caller opens a transaction, so a crash never leaves half-written state waiting.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as exc:
        raise NewswatchError(f"cannot open {what} {path}: {exc}") from exc
    return db
