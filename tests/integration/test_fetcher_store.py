"""The fetcher store on SQLite and PostgreSQL: the same tests, both backends."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, text

from newswatch.fetcher.http_fetch import Validators
from newswatch.fetcher.state import MIGRATIONS, FetcherStore
from newswatch.shared.db import StoreError, make_engine, migrate, redact


def test_seen_items_and_validators_survive_reopen(db_url: str) -> None:
    store = FetcherStore(make_engine(db_url), keep_per_feed=100)
    assert store.unseen("f", ["a", "b"]) == {"a", "b"}
    store.mark_seen("f", ["a"])
    store.mark_seen("f", ["a"])  # idempotent
    store.save_validators("f", Validators(etag='"e"'))
    store.save_validators("f", Validators(etag='"e2"', last_modified="Tue, 24 Nov 2026 10:00:00 GMT"))
    store.close()
    reopened = FetcherStore(make_engine(db_url), keep_per_feed=100)
    assert reopened.unseen("f", ["a", "b"]) == {"b"}
    assert reopened.unseen("other", ["a"]) == {"a"}
    assert reopened.validators("f") == Validators('"e2"', "Tue, 24 Nov 2026 10:00:00 GMT")
    assert reopened.validators("unknown") == Validators()
    assert reopened.unseen("f", []) == set()
    reopened.close()


def test_seen_set_is_bounded_per_feed(db_url: str) -> None:
    clock = iter(range(10_000))
    store = FetcherStore(make_engine(db_url), keep_per_feed=100, clock=lambda: float(next(clock)))
    for i in range(150):
        store.mark_seen("f", [f"id{i}"])
    store.mark_seen("g", ["x"])
    assert store.seen_count("f") == 100
    assert store.seen_count("g") == 1
    assert store.unseen("f", ["id0", "id49", "id50", "id149"]) == {"id0", "id49"}
    # more than one query chunk of ids
    assert len(store.unseen("f", [f"n{i}" for i in range(1200)])) == 1200
    store.close()


def test_migrations_are_recorded_and_applied_once(db_url: str) -> None:
    engine = make_engine(db_url)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(migrate(engine, "fetcher", MIGRATIONS)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [len(MIGRATIONS)] * 3
    assert {"fetcher_feeds", "fetcher_seen", "newswatch_migrations"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_database_errors_become_store_errors(db_url: str) -> None:
    engine = make_engine(db_url)
    store = FetcherStore(engine, keep_per_feed=10)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE fetcher_seen"))
    with pytest.raises(StoreError, match="updating the seen-set failed"):
        store.mark_seen("f", ["x"])
    with pytest.raises(StoreError, match="reading the seen-set failed"):
        store.unseen("f", ["x"])
    store.close()


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://user:secret@db:5432/nw") == "postgresql://user:***@db:5432/nw"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"
