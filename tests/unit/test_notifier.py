from __future__ import annotations

import ipaddress
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from newswatch.demo.receiver import WebhookReceiver, format_alert
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.handler import alert_id_for
from newswatch.notifier.store import DeliveryStore
from newswatch.notifier.webhook import make_client, post_webhook, webhook_payload
from newswatch.shared.contract import Item, Match, MatchReason, Source
from newswatch.shared.netguard import NetGuard

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
MATCH = Match(
    topic_id="nk-ukraine",
    query="North Korea Ukraine deployment",
    item=Item(
        item_id="0123456789abcdef",
        url="http://127.0.0.1/a",
        title="NATO chief worried",
        fetched_at=NOW,
        source=Source(feed_url="http://127.0.0.1/world.xml", feed_title="World", host="127.0.0.1"),
    ),
    reason=MatchReason(
        terms={"Korea": ["Korean"]}, snippet="North Korean troops deployed.", highlights=[(6, 12)], score=0.5
    ),
    matched_at=NOW,
)


def test_alert_id_is_stable_per_subscription_and_item() -> None:
    assert alert_id_for("ops", "i1") == alert_id_for("ops", "i1")
    assert alert_id_for("ops", "i1") != alert_id_for("ops2", "i1")
    assert alert_id_for("ops", "i1") != alert_id_for("ops", "i2")


def test_payload_and_terminal_rendering() -> None:
    body = webhook_payload("a1", "ops", MATCH, NOW)
    assert body["type"] == "newswatch.alert" and body["v"] == 1
    assert body["why"] == {
        "terms": {"Korea": ["Korean"]},
        "snippet": "North Korean troops deployed.",
        "highlights": [[6, 12]],
        "score": 0.5,
    }
    text = format_alert(body)
    assert "North \033[1mKorean\033[0m troops" in format_alert(body, color=True)  # the hit in bold
    for expected in (
        "ALERT [nk-ukraine]",
        "NATO chief worried",
        "source: World",
        "link:   http://127.0.0.1/a",
        "Korea → Korean",
        "North Korean troops deployed.",
    ):
        assert expected in text


def test_webhook_success_transient_and_permanent_failures() -> None:
    statuses = iter([204, 500, 429, 410, 302])
    received: list[tuple[dict[str, str], dict[str, Any]]] = []
    lock = threading.Lock()

    def record(h: dict[str, str], b: dict[str, Any]) -> None:
        with lock:
            received.append((h, b))

    receiver = WebhookReceiver(record, status=lambda: next(statuses)).start()
    client = make_client(5.0, NetGuard([ipaddress.ip_network("127.0.0.0/8")]), "newswatch-test")
    body = webhook_payload("a1", "ops", MATCH, NOW)
    try:
        post_webhook(client, receiver.url, "a1", body)
        assert received[0][0]["webhook-id"] == "a1"
        assert received[0][0]["content-type"] == "application/json"
        assert received[0][1] == body
        expectations = [(False, "http_5xx"), (False, "http_4xx"), (True, "http_4xx"), (True, "http_other")]
        for permanent, reason in expectations:
            with pytest.raises(DeliveryError) as info:
                post_webhook(client, receiver.url, "a1", body)
            assert (info.value.permanent, info.value.reason) == (permanent, reason)
        with pytest.raises(DeliveryError) as info:
            post_webhook(make_client(5.0, NetGuard([]), "t"), receiver.url, "a1", body)
        assert (info.value.permanent, info.value.reason) == (True, "blocked")
        port = int(receiver.url.split(":")[2].split("/")[0])
    finally:
        receiver.stop()
    with pytest.raises(DeliveryError) as info:
        post_webhook(client, f"http://127.0.0.1:{port}/hook", "a1", body)
    assert (info.value.permanent, info.value.reason) == (False, "network")


def test_delivery_store_survives_reopen(tmp_path: Path) -> None:
    store = DeliveryStore(tmp_path / "n.sqlite3")
    assert not store.handled("ops", "i1")
    store.record("ops", "i1", "a1", "t", "delivered")
    store.record("ops", "i1", "a1", "t", "delivered")
    store.record("ops", "i2", "a2", "t", "dead-lettered")
    store.close()
    reopened = DeliveryStore(tmp_path / "n.sqlite3")
    assert reopened.handled("ops", "i1") and reopened.handled("ops", "i2")
    assert not reopened.handled("other", "i1")
    assert reopened.count("delivered") == 1 and reopened.count("dead-lettered") == 1
    reopened.close()
