"""The notifier database's guarantees, on SQLite and PostgreSQL: several replicas, ids that
never change owner, tokens and their lifecycle, and a schema declared once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from newswatch.notifier.database import NotifierDb
from newswatch.notifier.errors import IdTakenError
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.outbox import NewStory, Outbox
from newswatch.notifier.router import Router
from newswatch.notifier.schema import METADATA
from newswatch.notifier.topic_repair import publish_topics, repair, topics_on_broker
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.clock import ManualClock
from newswatch.shared.config import KafkaSettings, NotifierSettings, SubscriptionConfig
from newswatch.shared.contract import ALL_TOPICS, TOPICS
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from tests.support.notifier import make_match
from tests.support.schema import assert_declared


def test_two_replicas_build_one_digest_and_claim_each_row_once(db_url: str, tmp_path: Path) -> None:
    one, two = NotifierDb(make_engine(db_url)), NotifierDb(make_engine(db_url))
    first, second = one.outbox, two.outbox
    try:
        sub = one.catalog.put_subscription(
            SubscriptionConfig(id="d", topics=("nk",), to="http://127.0.0.1:9/h", mode="hourly"), "alice"
        )
        router = Router(first, NotifierSettings())
        titles = [" ".join(f"w{n}x{i}" for i in range(6)) for n in range(20)]  # no words in common
        outcomes = [
            router.route(make_match(f"s{n}", title, ""), [sub])["d"] for n, title in enumerate(titles)
        ]
        assert outcomes == ["digest"] * 20
        taken: list[int] = []
        start = threading.Barrier(2)

        def build(store: Outbox, digest_id: str) -> None:
            start.wait()
            taken.append(store.take_digest("d", digest_id, "webhook"))

        threads = [threading.Thread(target=build, args=(s, f"dg-{i}")) for i, s in enumerate((first, second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(taken) == [0, 20]
        claims: list[list[str]] = []

        def claim(store: Outbox) -> None:
            start.wait()
            claims.append([d.alert_id for d in store.claim_due(10, lease=60)])

        threads = [threading.Thread(target=claim, args=(s,)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(len(c) for c in claims) == [0, 1]  # the one digest, claimed by one replica
    finally:
        one.close()
        two.close()


def test_tokens_are_stored_hashed_and_can_expire_and_be_revoked(db_url: str) -> None:
    clock = ManualClock(1000.0)
    engine = make_engine(db_url)
    db = NotifierDb(engine, clock)
    try:
        token, info = db.tokens.create("alice", "laptop", "admin", expires_at=2000.0)
        found = db.tokens.authenticate(token)
        assert found is not None and (found.owner, found.role) == ("alice", "admin")
        assert db.tokens.authenticate(token + "x") is None
        with engine.connect() as conn:  # the raw table holds no usable token
            rows = conn.exec_driver_sql("SELECT token_hash FROM nw_tokens").all()
        assert rows and token not in {r[0] for r in rows}
        (listed,) = db.tokens.list()
        assert listed.token_id == info.token_id and listed.last_used_at == 1000.0
        clock.set(2000.0)
        assert db.tokens.authenticate(token) is None  # expired
        other, other_info = db.tokens.create("bob")
        assert db.tokens.revoke(other_info.token_id) and not db.tokens.revoke(other_info.token_id)
        assert db.tokens.authenticate(other) is None  # revoked
        assert other_info.role == "subscriber"  # the default: never admin unless asked
    finally:
        db.close()


def test_ids_never_change_owner_and_a_deleted_subscription_takes_its_digests_along(db_url: str) -> None:
    db = NotifierDb(make_engine(db_url))
    try:
        spec = SubscriptionConfig(id="s", topics=("nk",), to="http://127.0.0.1:9/h", mode="hourly")
        mine = db.catalog.put_subscription(spec, "alice")
        router = Router(db.outbox, NotifierSettings())
        assert router.route(make_match("d1", "Floods in the valley", ""), [mine]) == {"s": "digest"}
        assert db.catalog.delete_subscription("s")
        assert db.catalog.subscription("s") is None and db.outbox.depth()["digest"] == 0
        with pytest.raises(IdTakenError):  # bob may not take alice's old id (and her log)
            db.catalog.put_subscription(spec, "bob")
        assert db.catalog.put_subscription(spec, "alice").secret != mine.secret  # she may, anew
        db.catalog.put_topic("t", "Korea", "alice")
        assert db.catalog.delete_topic("t")
        with pytest.raises(IdTakenError):
            db.catalog.put_topic("t", "Korea", "bob")
    finally:
        db.close()


def test_the_migrations_make_the_declared_schema(db_url: str) -> None:
    """The tables the migrations create are the ``Table`` declarations, column by column."""
    engine = make_engine(db_url)
    NotifierDb(engine).close()
    engine = make_engine(db_url)
    try:
        assert_declared(engine, METADATA.sorted_tables)
    finally:
        engine.dispose()


def test_topics_lost_by_the_broker_are_published_again(
    tmp_path: Path, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    """A broker restarted empty: the check finds the stored topics missing and re-publishes
    them, without restarting the notifier (the same publisher and store carry on)."""
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    db = NotifierDb(make_engine(f"sqlite:///{tmp_path}/n.sqlite3"))
    store = db.catalog
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "test"),
        metrics.pipeline,
        send_timeout=5,
        backoff=0.2,
    )
    stop = threading.Event()
    try:
        store.put_topic("nk", "North Korea", "alice")
        store.put_topic("heat", "heat wave", "alice")
        assert publish_topics(store, publisher) == 2
        assert repair(store, publisher, broker.bootstrap, kafka_settings, metrics, stop) == 0
        broker.stop()  # the embedded broker keeps nothing: it comes back empty
        broker.start()
        ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
        assert topics_on_broker(broker.bootstrap, kafka_settings, stop) == set()
        assert repair(store, publisher, broker.bootstrap, kafka_settings, metrics, stop) == 2
        assert topics_on_broker(broker.bootstrap, kafka_settings, stop) == {"nk", "heat"}
        assert registry.get_sample_value("newswatch_notifier_topics_republished_total") == 2
        publisher.publish([Record(TOPICS, "heat", None)])  # deleted through another path: a tombstone
        assert topics_on_broker(broker.bootstrap, kafka_settings, stop) == {"nk"}
    finally:
        publisher.close()
        db.close()


def test_the_database_counts_differing_bits_as_python_does(db_url: str) -> None:
    """``bit_distance`` on signed BIGINTs, both PostgreSQL forms (14+ and older) and SQLite's."""
    from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, insert, select

    from newswatch.shared.db import bit_distance, transaction

    values = [0, 1, -1, (1 << 63) - 1, -(1 << 63), 0x0123_4567_89AB_CDEF, -0x0123_4567_89AB_CDEF]
    table = Table("bits_probe", MetaData(), Column("id", Integer, primary_key=True), Column("v", BigInteger))
    engine = make_engine(db_url)
    try:
        table.create(engine)
        with transaction(engine, "probe") as conn:
            conn.execute(insert(table), [{"id": i, "v": v} for i, v in enumerate(values)])
        versions = [None, (13,)] if engine.dialect.name == "postgresql" else [None]
        for version in versions:
            with transaction(engine, "probe") as conn:
                if version is not None:
                    conn.dialect.server_version_info = version  # the older form
                for b in values:
                    got = conn.execute(select(table.c.v, bit_distance(conn, table.c.v, b))).all()
                    assert {v: d for v, d in got} == {
                        v: ((v ^ b) & (1 << 64) - 1).bit_count() for v in values
                    }
    finally:
        engine.dispose()


def test_routing_finds_the_nearest_story_within_the_distance_only(db_url: str) -> None:
    db = NotifierDb(make_engine(db_url), clock=ManualClock(1000.0))
    store = db.outbox
    try:
        base = 0xF0F0_F0F0_F0F0_F0F0
        with store.routing() as tx:
            tx.write(
                [
                    NewStory("s", "far", "far", 1, base ^ 0b1111111, "t", "u", "x"),  # 7 bits away
                    NewStory("s", "near", "near", 1, base ^ 0b11, "t", "u", "x"),  # 2 bits
                    NewStory("s", "dup", "near", 1, base, "t", "u", "x"),  # a duplicate: never a story
                    NewStory("s", "mid", "mid", 1, base ^ 0b111 << 60, "t", "u", "x"),  # 3 bits, top ones
                    NewStory("other", "o", "o", 1, base, "t", "u", "x"),  # another subscription
                    NewStory("third", "t3", "t3", 1, base ^ 0b1, "t", "u", "x"),
                ],
                [],
                [],
            )
        with store.routing() as tx:
            found = tx.nearest_stories(["s", "other", "third", "none"], 0.0, base, 6)
            assert found["s"].item_id == "near" and found["s"].fingerprint == base ^ 0b11
            assert found["other"].item_id == "o" and found["third"].item_id == "t3"
            assert "none" not in found
            assert tx.nearest_stories(["s"], 0.0, base, 1) == {}
            assert tx.nearest_stories(["s"], 1000.0, base, 6) == {}  # seen before the window opened
            assert tx.nearest_stories(["s"], 0.0, base ^ 0b1111111, 0)["s"].item_id == "far"
            assert set(tx.stories("near", ["s", "other"])) == {"s"}
    finally:
        db.close()


def test_topic_activity_counts_per_hour_and_forgets_old_hours(db_url: str) -> None:
    """The topics page's "matches in 24 h" and "last match", from two replicas' counts."""
    clock = ManualClock(1_800_000_000.0)
    db = NotifierDb(make_engine(db_url), clock)
    other = NotifierDb(make_engine(db_url), clock)  # a second replica on the same database
    db.activity.record(["nk", "nk", "heat"])
    other.activity.record(["nk"])
    clock.advance(3600)
    db.activity.record(["nk"])
    summary = db.activity.summary()
    assert summary["nk"].matches_24h == 4 and summary["nk"].last_match_at == clock.time()
    assert summary["heat"].matches_24h == 1 and summary["heat"].last_match_at == clock.time() - 3600
    clock.advance(23 * 3600)  # the first hour leaves the 24-hour window, not the table
    assert db.activity.summary()["nk"].matches_24h == 1 and db.activity.prune() == 0
    clock.advance(48 * 3600)
    assert db.activity.prune() == 3  # (nk, heat) of the first hour and nk of the second
    assert db.activity.summary() == {}
    other.close()
    db.close()
