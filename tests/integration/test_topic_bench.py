"""`newswatch topics test` and `apply --backfill` against items on the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from newswatch.cli import main
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS, MATCHES, TOPICS, Item, Source, encode
from newswatch.shared.kafka_client import ensure_topics
from tests.support.kafka import read_records

pytestmark = pytest.mark.integration


def item(item_id: str, title: str, summary: str) -> Item:
    return Item(
        item_id=item_id.ljust(16, "0"),
        title=title,
        summary=summary,
        url=f"https://news.example/{item_id}",
        fetched_at=datetime.now(UTC),
        source=Source(feed_url="https://news.example/feed.xml", host="news.example"),
    )


@pytest.fixture
def items_on_broker(broker: EmbeddedBroker, kafka_settings: KafkaSettings) -> str:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for record in (
        item(
            "nk",
            "Pyongyang sends troops",
            "North Korean soldiers were seen near Kursk. Officials are worried.",
        ),
        item("heat", "Heatwave grips Europe", "Temperatures soar."),
    ):
        producer.send(ITEMS, key=record.item_id.encode(), value=encode(record)).get(10)
    producer.send(ITEMS, key=b"bad", value=b"{not an item").get(10)
    producer.close()
    return broker.bootstrap


def test_topics_test_prints_hits_with_highlights(
    items_on_broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "(North Korea) NEAR/5 (troops OR soldiers)"
    assert main(["topics", "test", query, "--bootstrap", items_on_broker, "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "Pyongyang sends troops" in out and "Heatwave" not in out
    assert "**North Korean soldiers** were seen near Kursk." in out  # the sentence with the most hits
    assert "1 of 2 item(s) of the last 1h match" in out
    assert main(["topics", "test", "(North Korea", "--bootstrap", items_on_broker]) == 2
    assert "')' expected to close the group opened at position 0" in capsys.readouterr().err


def test_apply_backfill_publishes_recent_matches_once(
    items_on_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text("topics:\n  - {id: nk, query: 'DPRK troops'}\n  - {id: storms, query: hurricane}\n")
    assert (
        main(["apply", "-f", str(path), "--direct", "--bootstrap", items_on_broker, "--backfill", "2h"]) == 0
    )
    assert "backfill: 1 match(es) among 2 item(s) of the last 2h" in capsys.readouterr().out
    matches = [json.loads(r.value) for r in read_records(items_on_broker, MATCHES)]
    assert [(m["topic_id"], m["item"]["title"]) for m in matches] == [("nk", "Pyongyang sends troops")]
    assert matches[0]["reason"]["terms"] == {"DPRK": ["Pyongyang", "North", "Korean"], "troops": ["troops"]}
    assert {r.key for r in read_records(items_on_broker, TOPICS)} == {b"nk", b"storms"}
    assert (
        main(["apply", "-f", str(path), "--direct", "--bootstrap", items_on_broker, "--backfill", "0s"]) == 2
    )
