from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from newswatch.shared.contract import Item, Match, MatchReason, Source, TopicDefinition, decode, encode
from newswatch.shared.errors import ContractError

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def item() -> Item:
    return Item(
        item_id="0123456789abcdef",
        url="https://example.org/a",
        title="Title",
        summary="Summary",
        published=NOW,
        fetched_at=NOW,
        source=Source(feed_url="https://example.org/feed", feed_title="Example", host="example.org"),
    )


def test_round_trip_every_payload() -> None:
    it = item()
    assert decode(Item, encode(it)) == it
    match = Match(
        topic_id="t", query="q", item=it, reason=MatchReason(terms={"q": ["Q"]}, snippet="s"), matched_at=NOW
    )
    assert decode(Match, encode(match)) == match
    topic = TopicDefinition(id="t", query="a b", updated_at=NOW)
    assert decode(TopicDefinition, encode(topic)) == topic


def test_unknown_newer_fields_are_tolerated() -> None:
    data = json.loads(encode(item()))
    data["sentiment"] = 0.7
    data["source"]["country"] = "NL"
    assert decode(Item, json.dumps(data).encode()) == item()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "tombstone"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"v": 2, "item_id": "x"}', "unsupported schema version v=2"),
        (b'{"item_id": "0123456789"}', "unsupported schema version v=None"),
        (b'{"v": 1, "item_id": "0123456789"}', "Item: fetched_at: Field required"),
    ],
)
def test_bad_payloads_say_what_is_wrong(raw: bytes | None, expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        decode(Item, raw)
