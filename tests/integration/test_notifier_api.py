"""The notifier's HTTP API on a real uvicorn server, a real database (SQLite and PostgreSQL)
and the real broker: auth, ownership, 422s naming the field, the delivery log, the alert
stream, apply, and the topic test bench."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from newswatch.matcher.aliases import AliasTable
from newswatch.matcher.topics import Compiler
from newswatch.notifier.api import ApiContext
from newswatch.notifier.database import NotifierDb
from newswatch.notifier.intake import Routes
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.router import Router
from newswatch.notifier.site import ApiServer, make_app
from newswatch.notifier.stream import AlertHub, AlertTail
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import Config, KafkaSettings, NotifierSettings, SubscriptionConfig
from newswatch.shared.contract import ALERTS, ALL_TOPICS, ITEMS, MATCHES, TOPICS, Alert, encode
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from tests.support.items import make_item
from tests.support.kafka import read_records
from tests.support.notifier import make_match


@dataclass
class Api:
    url: str
    db: NotifierDb
    publisher: Publisher
    alice: dict[str, str]  # an admin
    bob: dict[str, str]  # a subscriber
    bootstrap: str

    def call(self, method: str, path: str, who: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=who or {}, timeout=30, **kw)


@pytest.fixture
def api(db_url: str, broker: EmbeddedBroker, kafka_settings: KafkaSettings) -> Iterator[Api]:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    db = NotifierDb(make_engine(db_url))
    metrics = NotifierMetrics(CollectorRegistry())
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "test"),
        metrics.pipeline,
        send_timeout=5,
        backoff=0.1,
    )
    config = Config(
        kafka=kafka_settings.model_copy(update={"bootstrap": broker.bootstrap}),
        allow_networks=("127.0.0.0/8",),  # type: ignore[arg-type]  # validated from text
    )
    stop = threading.Event()
    hub = AlertHub()
    AlertTail(broker.bootstrap, config.kafka, hub, stop).start()
    context = ApiContext(
        db,
        publisher,
        Routes(db.catalog),
        config,
        hub,
        compiler_factory=lambda: Compiler(AliasTable(), ("en",)),
    )
    server = ApiServer(make_app(context), "127.0.0.1", 0)
    server.start()
    context.bound_url = f"http://127.0.0.1:{server.bound_port}"  # as the service sets it
    alice = {"Authorization": f"Bearer {db.tokens.create('alice', 'test', 'admin')[0]}"}
    bob = {"Authorization": f"Bearer {db.tokens.create('bob', 'test', 'subscriber')[0]}"}
    yield Api(f"http://127.0.0.1:{server.bound_port}", db, publisher, alice, bob, broker.bootstrap)
    stop.set()
    server.stop()
    publisher.close()
    db.close()


def test_no_token_or_an_unknown_one_is_401(api: Api) -> None:
    for path in ("/topics", "/subscriptions", "/deliveries"):
        response = api.call("GET", path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert api.call("GET", "/topics", {"Authorization": "Bearer nwt_forged"}).status_code == 401
    assert api.call("PUT", "/topics/x", json={"query": "a"}).status_code == 401
    assert api.call("GET", "/openapi.json").status_code == 401  # the documentation needs a token too
    assert api.call("GET", "/openapi.json", api.bob).json()["info"]["title"] == "newswatch notifier API"


def test_topics_are_checked_published_and_owned(api: Api) -> None:
    bad = api.call("PUT", "/topics/nk", api.alice, json={"query": "North AND (Korea"})
    assert bad.status_code == 422
    (detail,) = bad.json()["detail"]
    assert detail["loc"] == ["body", "query"] and "position" in detail["msg"]
    assert api.call("PUT", "/topics/Bad Id", api.alice, json={"query": "x"}).status_code == 422
    ok = api.call("PUT", "/topics/nk", api.alice, json={"query": "North Korea Ukraine"})
    assert ok.status_code == 200 and ok.json() == {
        "id": "nk",
        "query": "North Korea Ukraine",
        "owner": "alice",
    }
    published = [json.loads(r.value) for r in read_records(api.bootstrap, TOPICS)]
    assert [(t["id"], t["query"]) for t in published] == [("nk", "North Korea Ukraine")]
    assert api.call("PUT", "/topics/nk", api.bob, json={"query": "hijack"}).status_code == 403  # not an admin
    assert api.call("GET", "/topics/nk", api.bob).json()["owner"] == "alice"  # visible to all
    api.call(
        "POST", "/subscriptions", api.bob, json={"id": "b1", "topics": ["nk"], "to": "http://127.0.0.1:9/h"}
    )
    assert api.call("DELETE", "/topics/nk", api.alice).status_code == 409
    assert api.call("DELETE", "/subscriptions/b1", api.bob).status_code == 204
    assert api.call("DELETE", "/topics/nk", api.alice).status_code == 204
    assert read_records(api.bootstrap, TOPICS)[-1].value is None  # a tombstone for the matchers
    assert api.call("GET", "/topics/nk", api.alice).status_code == 404


def test_subscriptions_belong_to_their_owner(api: Api) -> None:
    api.call("PUT", "/topics/nk", api.alice, json={"query": "Korea"})
    created = api.call(
        "POST",
        "/subscriptions",
        api.alice,
        json={"id": "ops", "topics": ["nk"], "to": "http://127.0.0.1:9/h"},
    )
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    assert "secret" not in api.call("GET", "/subscriptions/ops", api.alice).json()
    assert api.call("GET", "/subscriptions/ops", api.bob).status_code == 404  # not 403: no leak
    assert api.call("DELETE", "/subscriptions/ops", api.bob).status_code == 404
    assert api.call("GET", "/subscriptions", api.bob).json() == []
    assert [s["id"] for s in api.call("GET", "/subscriptions", api.alice).json()] == ["ops"]
    assert api.call("GET", "/deliveries?subscription=ops", api.bob).status_code == 404
    changed = api.call(
        "PUT",
        "/subscriptions/ops",
        api.alice,
        json={"id": "ops", "topics": ["nk"], "to": "mailto:ops@newswatch.test", "mode": "daily at 08:00"},
    )
    assert changed.status_code == 200 and changed.json()["mode"] == "daily at 08:00"
    stored = api.db.catalog.subscription("ops")
    assert stored is not None and stored.secret == created.json()["secret"]  # kept across edits


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        (
            {"id": "s", "topics": ["missing"], "to": "http://127.0.0.1:9/h"},
            ["body", "topics"],
            "unknown topic",
        ),
        ({"id": "s", "topics": ["nk"], "to": "ftp://x/y"}, ["body", "to"], "Apprise"),
        (
            {"id": "s", "topics": ["nk"], "to": "http://127.0.0.1:9/h", "mode": "daily"},
            ["body", "mode"],
            "unknown mode",
        ),
        (
            {"id": "s", "topics": ["nk"], "to": "http://127.0.0.1:9/h", "colour": "red"},
            ["body", "colour"],
            "Extra",
        ),
        ({"id": "s", "topics": ["nk"]}, ["body", "to"], "Field required"),
    ],
)
def test_bad_subscriptions_are_422_naming_the_field(
    api: Api, body: dict[str, Any], loc: list[str], message: str
) -> None:
    api.call("PUT", "/topics/nk", api.alice, json={"query": "Korea"})
    response = api.call("POST", "/subscriptions", api.alice, json=body)
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == loc and message in detail["msg"]


def test_apply_takes_yaml_and_reports_the_field_of_a_bad_one(api: Api) -> None:
    malformed = api.call("POST", "/apply", api.alice, content=b"topics: [unclosed")
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"] == ["body"]
    assert "not valid YAML" in malformed.json()["detail"][0]["msg"]
    bad_to = "topics: [{id: nk, query: Korea}]\nsubscriptions: [{id: s, topics: [nk], to: 'nope'}]\n"
    response = api.call("POST", "/apply", api.alice, content=bad_to.encode())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "subscriptions", 0, "to"]
    bad_query = "topics: [{id: nk, query: 'North AND (Korea'}]\n"
    assert api.call("POST", "/apply", api.alice, content=bad_query.encode()).json()["detail"][0]["loc"] == [
        "body",
        "topics",
        0,
        "query",
    ]
    good = "topics: [{id: nk, query: Korea}]\nsubscriptions: [{id: s, topics: [nk], to: 'http://127.0.0.1:9/h'}]\n"
    applied = api.call("POST", "/apply", api.alice, content=good.encode())
    assert applied.status_code == 200 and applied.json()["topics"] == ["nk"]
    assert applied.json()["secrets"]["s"].startswith("whsec_")
    carol = {"Authorization": f"Bearer {api.db.tokens.create('carol', 'test', 'admin')[0]}"}
    stolen = api.call("POST", "/apply", carol, content=good.encode())  # alice's subscription id
    assert stolen.status_code == 422 and stolen.json()["detail"][0]["loc"] == [
        "body",
        "subscriptions",
        0,
        "id",
    ]
    topic_only = api.call("POST", "/apply", carol, content=b"topics: [{id: nk, query: Korea}]\n")
    assert topic_only.status_code == 403  # alice's topic
    assert api.call("POST", "/apply", api.bob, content=good.encode()).status_code == 403  # a subscriber


def test_dead_deliveries_are_visible_in_the_log(api: Api) -> None:
    api.db.catalog.put_subscription(
        SubscriptionConfig(id="gone", topics=("nk",), to="http://127.0.0.1:9/h"), "alice"
    )
    match = make_match("d1", "Mayor resigns")
    Router(api.db.outbox, NotifierSettings()).route(match, api.db.catalog.subscriptions())
    (row,) = api.db.outbox.claim_due(10, lease=60)
    api.db.outbox.dead(row.alert_id, 1, "http_4xx", "http://127.0.0.1:9/…: HTTP 410")
    response = api.call("GET", "/deliveries?status=dead", api.alice)
    (entry,) = response.json()
    assert entry["subscription"] == "gone" and entry["failure"] == "http_4xx" and "410" in entry["error"]
    assert api.call("GET", "/deliveries?status=dead", api.bob).json() == []
    assert api.call("GET", "/deliveries?status=lost", api.alice).status_code == 422
    assert api.call("GET", "/deliveries?since=2026-11-25T00:00:00", api.alice).status_code == 422  # no zone


def test_alert_stream_sends_the_owners_alerts_as_server_sent_events(api: Api) -> None:
    api.db.catalog.put_subscription(
        SubscriptionConfig(id="mine", topics=("nk",), to="http://127.0.0.1:9/h"), "alice"
    )
    api.db.catalog.put_subscription(
        SubscriptionConfig(id="theirs", topics=("nk",), to="http://127.0.0.1:9/h"), "bob"
    )
    match = make_match("s1", "Troops cross border")
    events: list[str] = []

    def alert(sub: str, alert_id: str) -> Record:
        value = Alert(
            alert_id=alert_id,
            subscription_id=sub,
            topic_id="nk",
            query="q",
            item=match.item,
            reason=match.reason,
            delivered_at=datetime.now(UTC),
        )
        return Record(ALERTS, sub, encode(value))

    with httpx.stream("GET", api.url + "/alerts/stream?topic=nk", headers=api.alice, timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        lines = response.iter_lines()
        assert next(lines) == ": connected"

        def publish() -> None:
            api.publisher.publish([alert("theirs", "a-theirs"), alert("mine", "a-mine")])

        threading.Timer(1.0, publish).start()
        for line in lines:
            events.append(line)
            if line.startswith("data:"):
                break
    assert events[-3:] == ["event: alert", "id: a-mine", events[-1]]
    assert json.loads(events[-1][len("data: ") :])["subscription_id"] == "mine"


def test_topic_test_bench_through_the_api(api: Api) -> None:
    items = [
        make_item("t1", "North Korean troops deployed to Ukraine", "Officials confirmed the deployment."),
        make_item("t2", "Stocks rally", "Markets rose."),
    ]
    api.publisher.publish([Record(ITEMS, i.item_id, encode(i)) for i in items])
    response = api.call("POST", "/topics/test", api.alice, json={"query": "Korea deployment", "since": "7d"})
    body = response.json()
    assert response.status_code == 200 and body["items"] == 2 and body["matches"] == 1
    assert body["hits"][0]["title"] == "North Korean troops deployed to Ukraine"
    assert "**" in body["hits"][0]["highlighted"]
    bad = api.call("POST", "/topics/test", api.alice, json={"query": "x", "since": "soon"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "since"]
    assert read_records(api.bootstrap, TOPICS, idle_ms=300) == []  # testing created no topic
    created = api.call("PUT", "/topics/nk?backfill=7d", api.alice, json={"query": "Korea deployment"})
    assert created.status_code == 200 and created.json()["backfilled"] == 1
    (backfilled,) = [json.loads(r.value) for r in read_records(api.bootstrap, MATCHES)]
    assert backfilled["topic_id"] == "nk" and backfilled["item"]["title"].startswith("North Korean troops")
    assert api.call("PUT", "/topics/nk?backfill=later", api.alice, json={"query": "x"}).json()["detail"][0][
        "loc"
    ] == ["query", "backfill"]


def test_cli_apply_goes_through_the_api(api: Api, tmp_path: Path) -> None:
    document = tmp_path / "topics.yaml"
    document.write_text(
        "topics: [{id: nk, query: Korea}]\nsubscriptions: [{id: s, topics: [nk], to: 'http://127.0.0.1:9/h'}]\n"
    )
    token = api.alice["Authorization"].split()[1]

    def apply() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "newswatch", "apply", "-f", str(document), "--server", api.url]
        return subprocess.run(
            [*command, "--token", token], capture_output=True, text=True, timeout=60, check=False
        )

    done = apply()
    assert done.returncode == 0, done.stderr
    assert "applied 1 topic(s), 1 subscription(s)" in done.stdout and "webhook secret whsec_" in done.stdout
    stored = api.db.catalog.subscription("s")
    assert stored is not None and stored.owner == "alice"
    document.write_text("topics: [{id: nk, query: 'North AND (Korea'}]\n")
    refused = apply()
    assert refused.returncode == 2 and "topics" in refused.stderr


def test_subscription_status_pause_resume_feeds_and_test_alerts(api: Api) -> None:
    assert api.call("PUT", "/topics/nk", api.alice, json={"query": "North Korea"}).status_code == 200
    mail = api.call(
        "POST",
        "/subscriptions",
        api.bob,
        json={"id": "m", "topics": ["nk"], "to": "mailto:me@newswatch.test"},
    ).json()
    # Email needs the address's consent first; this notifier has no mail server to ask it with.
    assert mail["status"] == "pending" and mail["confirmation"].startswith("not sent")
    assert api.call("POST", "/subscriptions/m/pause", api.bob).status_code == 409  # nothing to pause yet
    hook = api.call(
        "POST", "/subscriptions", api.bob, json={"id": "h", "topics": ["nk"], "to": "http://127.0.0.1:9/x"}
    )
    assert hook.json()["status"] == "active"
    paused = api.call("POST", "/subscriptions/h/pause", api.bob).json()
    assert paused["status"] == "paused" and api.db.catalog.subscription("h").status == "paused"  # type: ignore[union-attr]
    assert api.call("GET", "/subscriptions/h", api.bob).json()["status"] == "paused"
    assert api.call("POST", "/subscriptions/h/resume", api.bob).json()["status"] == "active"
    assert api.call("POST", "/subscriptions/h/pause", api.alice).status_code == 404  # not alice's
    # The test button needs the sender, which this API-only rig does not run.
    assert api.call("POST", "/subscriptions/h/test", api.bob).status_code == 503
    feeds = api.call("GET", "/subscriptions/h/feeds", api.bob).json()
    assert feeds["atom"].endswith(".atom") and feeds["json"].endswith(".json")
    assert api.call("GET", "/subscriptions/h/feeds", api.bob).json() == feeds  # stable until rotated
    assert "Bearer" not in feeds["atom"] and api.bob["Authorization"][7:] not in feeds["atom"]
    assert feeds["atom"].startswith(api.url + "/feeds/")
    atom = httpx.get(feeds["atom"], timeout=10)
    assert atom.status_code == 200 and b"<feed" in atom.content
    rotated = api.call("POST", "/subscriptions/h/feeds/rotate", api.bob).json()
    assert rotated != feeds
    assert httpx.get(feeds["atom"], timeout=10).status_code == 404
    assert api.call("DELETE", "/subscriptions/h", api.bob).status_code == 204
    assert httpx.get(rotated["json"], timeout=10).status_code == 404  # a deleted subscription's feed


def test_a_token_may_name_its_holders_address(api: Api) -> None:
    token, info = api.db.tokens.create("carol", "web", "subscriber", email=" Carol@Newswatch.TEST ")
    assert info.email == "carol@newswatch.test"
    found = api.db.tokens.by_email("carol@newswatch.test")
    assert found is not None and found.token_id == info.token_id
    api.db.tokens.revoke(info.token_id)
    assert api.db.tokens.by_email("carol@newswatch.test") is None  # a revoked token signs nobody in
    assert token.startswith("nwt_")
