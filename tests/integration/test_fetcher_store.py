"""The fetcher store on SQLite and PostgreSQL: the same tests, both backends."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, text

from newswatch.fetcher.dedup import Decision, Known, Remember
from newswatch.fetcher.http_fetch import Validators
from newswatch.fetcher.pending import PendingBatch, settle
from newswatch.fetcher.state import MIGRATIONS, TABLES, FetcherStore
from newswatch.shared.clock import ManualClock
from newswatch.shared.db import StoreError, make_engine, migrate, redact
from newswatch.shared.kafka_io import Ack
from tests.support.items import make_item
from tests.support.schema import assert_declared


def seen(store: FetcherStore, feed: str, ids: list[str]) -> set[str]:
    return set(store.seen_state(feed, ids))


def test_seen_items_and_feed_state_survive_reopen(db_url: str) -> None:
    store = FetcherStore(make_engine(db_url), keep_per_feed=100)
    assert seen(store, "f", ["a", "b"]) == set()
    assert store.feed_state("f").first_poll
    store.remember("f", [Remember("a", "h1", 1)])
    store.remember("f", [Remember("a", "h2", 2)])  # a revision replaces the row
    store.record_success("f", Validators(etag='"e"'))
    store.record_success(
        "f", Validators('"e2"', "Tue, 24 Nov 2026 10:00:00 GMT"), "https://moved/f", "b" * 64
    )
    store.close()
    reopened = FetcherStore(make_engine(db_url), keep_per_feed=100)
    assert reopened.seen_state("f", ["a", "b"]) == {"a": Known("h2", 2)}
    assert seen(reopened, "other", ["a"]) == set()
    state = reopened.feed_state("f")
    assert state.validators == Validators('"e2"', "Tue, 24 Nov 2026 10:00:00 GMT")
    assert (state.current_url, state.body_hash, state.first_poll) == ("https://moved/f", "b" * 64, False)
    assert reopened.feed_state("unknown").validators == Validators()
    assert reopened.seen_state("f", []) == {}
    reopened.close()


def test_seen_set_is_bounded_per_feed(db_url: str) -> None:
    clock = ManualClock(0.0)
    store = FetcherStore(make_engine(db_url), keep_per_feed=100, clock=clock)
    for i in range(150):
        clock.advance(1.0)
        store.remember("f", [Remember(f"id{i}", "", 1)])
    store.remember("g", [Remember("x", "", 1)])
    assert len(seen(store, "f", [f"id{i}" for i in range(150)])) == 100
    assert seen(store, "g", ["x"]) == {"x"}
    assert seen(store, "f", ["id0", "id49", "id50", "id149"]) == {"id50", "id149"}
    # more than one query chunk of ids
    assert seen(store, "f", [f"id{i}" for i in range(150)] + [f"n{i}" for i in range(1200)]) == {
        f"id{i}" for i in range(50, 150)
    }
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
        store.remember("f", [Remember("x", "", 1)])
    with pytest.raises(StoreError, match="reading the seen-set failed"):
        store.seen_state("f", ["x"])
    store.close()


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://user:secret@db:5432/nw") == "postgresql://user:***@db:5432/nw"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


A, B, OLD = "a" * 8, "b" * 8, "old" * 3


def test_journal_is_closed_by_remember_and_floors_follow_the_acks(db_url: str) -> None:
    store = FetcherStore(make_engine(db_url), keep_per_feed=100)
    decision = Decision(
        publish=[make_item(A), make_item(B, revision=2)],
        remember=[Remember(A, "h", 1), Remember(B, "h", 2), Remember(OLD, "h", 1)],
        claims=[("https://x/a", A)],
        also_in=["https://x/z"],
    )
    first = store.begin_pending("f", lambda floors: PendingBatch.of("batch1", "f", floors, decision))
    assert first.floors == {}  # nothing acknowledged yet: read from the beginning
    assert [b.batch_id for b in store.pending_batches()] == ["batch1"]
    reread = store.pending_batches()[0]
    assert (reread.publish, reread.remember, reread.claims, reread.also_in) == (
        first.publish,
        first.remember,
        first.claims,
        first.also_in,
    )
    store.remember(
        "f", decision.remember, decision.claims, pending="batch1", acked=[Ack("t", 0, 41), Ack("t", 2, 7)]
    )
    assert store.pending_batches() == []
    assert seen(store, "f", [A, B, OLD]) == {A, B, OLD}
    second = store.begin_pending("g", lambda floors: PendingBatch.of("batch2", "g", floors, decision))
    assert second.floors == {0: 42, 2: 8}
    # settling keeps what was decided, minus the records Kafka never got
    store.settle(second, settle(second, found={(A, 1)}))
    assert store.pending_batches() == []
    assert seen(store, "g", [A, B, OLD]) == {A, OLD}
    assert store.url_owners(["https://x/a"]) == {"https://x/a": A}
    store.close()


def test_cached_state_after_a_write_is_what_the_database_holds(db_url: str) -> None:
    store = FetcherStore(make_engine(db_url), keep_per_feed=100)
    store.record_success("f", Validators(etag='"e"'), body_hash="a" * 64)
    store.record_success("f", Validators('"e2"', "Tue, 24 Nov 2026 10:00:00 GMT"), "https://moved/f")
    store.record_success("g", Validators(), "https://moved/g", "b" * 64)
    cached = {u: store.cached_state(u) for u in ("f", "g")}
    assert store.success_is_noop("f", Validators('"e2"', "Tue, 24 Nov 2026 10:00:00 GMT"))
    assert not store.success_is_noop("f", Validators('"e3"'))
    reopened = FetcherStore(make_engine(db_url), keep_per_feed=100)
    assert cached == {u: reopened.feed_state(u) for u in ("f", "g")}
    store.close()
    reopened.close()


def test_the_migrations_make_the_declared_schema(db_url: str) -> None:
    """The fetcher's tables, the WebSub subscriptions' included, as the migrations create them."""
    FetcherStore(make_engine(db_url), keep_per_feed=100).close()
    engine = make_engine(db_url)
    try:
        assert_declared(engine, TABLES)
    finally:
        engine.dispose()
