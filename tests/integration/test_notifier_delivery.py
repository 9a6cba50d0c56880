"""The notifier's routing and delivery on real parts: SQLite *and* PostgreSQL, a real webhook
receiver and a real SMTP server on 127.0.0.1, the real broker for the alerts and the DLQ.
The clock is injected so digests, rate windows and retries happen when the test says."""

from __future__ import annotations

import ipaddress
import json
import random
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from newswatch.notifier.channels import EmailChannel, channels
from newswatch.notifier.database import NotifierDb
from newswatch.notifier.dispatcher import Dispatcher
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.intake import MatchProcessor, Routes
from newswatch.notifier.mailer import Mailer
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.model import Outgoing, alert_id_for
from newswatch.notifier.outbox import Outbox
from newswatch.notifier.render import view
from newswatch.notifier.router import Router
from newswatch.notifier.service import reconcile
from newswatch.notifier.topic_repair import publish_topics
from newswatch.notifier.webhook import make_client
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import (
    Config,
    KafkaSettings,
    NotifierSettings,
    SmtpSettings,
    SubscriptionConfig,
    TopicConfig,
)
from newswatch.shared.contract import ALERTS, ALL_TOPICS, DLQ, MATCHES, TOPICS, encode
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_client import ensure_topics, make_consumer, producer_factory
from newswatch.shared.kafka_io import ConsumerLoop, LoopPolicy, Publisher, Record
from newswatch.shared.netguard import NetGuard
from tests.support.hooks import HookServer
from tests.support.kafka import read_records
from tests.support.notifier import Clock, SmtpSink, drive, make_match
from tests.support.waiting import wait_for

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@dataclass
class Rig:
    db: NotifierDb
    router: Router
    dispatcher: Dispatcher
    metrics: NotifierMetrics
    clock: Clock
    publisher: Publisher
    hook: HookServer
    smtp: SmtpSink
    bootstrap: str
    registry: CollectorRegistry

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    @property
    def store(self) -> Outbox:
        return self.db.outbox

    def subscribe(self, **spec: Any) -> None:
        spec.setdefault("topics", ("nk",))
        spec.setdefault("to", self.hook.url)
        self.db.catalog.put_subscription(SubscriptionConfig(**spec), "alice")

    def route(self, *matches: Any) -> list[dict[str, str]]:
        subs = self.db.catalog.subscriptions()
        return [self.router.route(m, [s for s in subs if m.topic_id in s.spec.topics]) for m in matches]

    def bodies(self) -> list[dict[str, Any]]:
        """Bodies of the webhook requests that were answered with a 2xx."""
        return [h.body for h in self.hook.delivered()]


@pytest.fixture
def rig(db_url: str, broker: EmbeddedBroker, kafka_settings: KafkaSettings) -> Iterator[Rig]:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    clock = Clock(START)
    db = NotifierDb(make_engine(db_url), clock=clock)
    settings = NotifierSettings(retry_backoff=1.0, retry_backoff_max=60.0, max_attempts=5, senders=4)
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "test"),
        metrics.pipeline,
        send_timeout=5,
        backoff=0.1,
    )
    hook = HookServer().start()
    smtp = SmtpSink().start()
    client = make_client(5.0, NetGuard(LOOPBACK), "newswatch-test")
    smtp_settings = SmtpSettings(host="127.0.0.1", port=smtp.port, sender="alerts@newswatch.test")
    pool = ThreadPoolExecutor(4)
    dispatcher = Dispatcher(
        db.outbox,
        channels(client, Mailer(smtp_settings, NetGuard(LOOPBACK)), pool),
        publisher,
        metrics,
        settings,
        subscriptions=db.catalog.subscription,
        clock=clock,
        rng=random.Random(7),
    )
    yield Rig(
        db,
        Router(db.outbox, settings),
        dispatcher,
        metrics,
        clock,
        publisher,
        hook,
        smtp,
        broker.bootstrap,
        registry,
    )
    dispatcher.close(wait=5)
    pool.shutdown()
    hook.stop()
    smtp.stop()
    publisher.close()
    db.close()


SYNDICATED = [
    ("nk1", "North Korean troops deployed to Ukraine front, officials say", "Reuters"),
    ("nk2", "North Korean troops deployed to Ukraine front - officials say", "AP"),
    ("nk3", "North Korean troops deployed to Ukraine front, officials say", "BBC"),
]
LEDE = (
    "Pyongyang has sent thousands of soldiers to fight alongside Russian forces in the Kursk "
    "region, according to Western intelligence."
)


def test_one_story_from_three_feeds_is_one_alert_per_subscription(rig: Rig) -> None:
    rig.subscribe(id="ops")
    rig.subscribe(id="mail", to="mailto:desk@newswatch.test")
    matches = [make_match(i, t, LEDE, source=s, host=f"{s.lower()}.127.0.0.1.test") for i, t, s in SYNDICATED]
    outcomes = rig.route(*matches)
    assert outcomes == [
        {"ops": "queued", "mail": "queued"},
        {"ops": "duplicate", "mail": "duplicate"},
        {"ops": "duplicate", "mail": "duplicate"},
    ]
    assert rig.route(matches[0]) == [{"ops": "repeat", "mail": "repeat"}]  # a redelivered match
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 1 and len(rig.smtp.received()) == 1)
    body = rig.bodies()[0]
    assert body["type"] == "newswatch.alert" and body["subscription"] == "ops"
    assert [r["source"] for r in body["also_reported_by"]] == ["AP", "BBC"]
    mail = rig.smtp.received()[0]
    assert mail["To"] == "desk@newswatch.test" and "North Korean troops" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Also reported by: AP" in text and "<mark>North</mark>" in html
    rows = {d.subscription_id: d for d in rig.store.deliveries()}
    assert {k: (v.status, v.attempts) for k, v in rows.items()} == {
        "ops": ("delivered", 1),
        "mail": ("delivered", 1),
    }
    assert rig.sample("newswatch_notifier_duplicates_suppressed_total") == 0  # counted by the intake
    alerts = [json.loads(r.value) for r in read_records(rig.bootstrap, ALERTS)]
    assert sorted((a["subscription_id"], a["channel"]) for a in alerts) == [
        ("mail", "email"),
        ("ops", "webhook"),
    ]


def test_digest_goes_out_once_at_the_scheduled_time_in_the_subscribers_zone(rig: Rig) -> None:
    rig.subscribe(id="morning", mode="daily at 08:00", timezone="Europe/Berlin")  # 07:00 UTC in November
    stories = [
        make_match("d1", "Storm floods Rhine valley", "Rain fell for three days."),
        make_match("d2", "Central bank holds rates", "Inflation eased in October."),
        make_match("d3", "Chess champion retires", "The title goes vacant."),
    ]
    assert [o["morning"] for o in rig.route(*stories)] == ["digest", "digest", "digest"]
    copy = make_match("d1-copy", "Storm floods Rhine valley", "Rain fell for three days.", source="Wire")
    assert rig.route(copy) == [{"morning": "duplicate"}]
    rig.clock.set(START + timedelta(minutes=59, seconds=59))  # 07:59:59 in Berlin
    rig.dispatcher.run_once()
    assert rig.store.depth() == {"pending": 0, "digest": 3} and not rig.hook.all()
    rig.clock.set(START + timedelta(hours=1, seconds=1))
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 1)
    hit = rig.hook.delivered()[0]
    headers, body = hit.headers, hit.body
    assert body["type"] == "newswatch.digest" and headers["webhook-id"] == body["digest_id"]
    assert [a["item"]["title"] for a in body["alerts"]] == [m.item.title for m in stories]
    assert [a["alert_id"] for a in body["alerts"]] == [
        alert_id_for("morning", m.item.item_id) for m in stories
    ]
    rig.clock.advance(86_400)
    rig.dispatcher.run_once()
    assert len(rig.hook.all()) == 1 and rig.store.depth() == {"pending": 0, "digest": 0}


def test_rate_limit_overflow_goes_to_the_next_digest_never_dropped(rig: Rig) -> None:
    rig.subscribe(id="capped", max_per_hour=2)
    stories = [
        make_match(f"r{i}", title, "")
        for i, title in enumerate(
            ["Quake hits Chile", "Bank merger collapses", "Comet visible tonight", "Strike halts trains"]
        )
    ]
    assert [o["capped"] for o in rig.route(*stories)] == ["queued", "queued", "overflow", "overflow"]
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 2)
    assert all(b["type"] == "newswatch.alert" for b in rig.bodies())
    rig.clock.set(START + timedelta(hours=1))  # the top of the next hour
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 3)
    digest = rig.bodies()[2]
    assert digest["type"] == "newswatch.digest"
    assert [a["item"]["title"] for a in digest["alerts"]] == ["Comet visible tonight", "Strike halts trains"]


def test_quiet_hours_and_snooze_hold_alerts_for_one_digest(rig: Rig) -> None:
    rig.subscribe(id="night", quiet_hours="22:00-07:30", timezone="UTC")  # START is 06:00 UTC: quiet
    rig.subscribe(id="away", snooze_until=START + timedelta(hours=3))
    assert rig.route(make_match("q1", "Volcano erupts near Naples", "")) == [
        {"night": "held", "away": "held"}
    ]
    rig.clock.set(START + timedelta(minutes=90))
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 1)
    assert rig.bodies()[0]["subscription"] == "night" and rig.bodies()[0]["type"] == "newswatch.digest"
    rig.clock.set(START + timedelta(hours=3))
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 2)
    assert rig.bodies()[1]["subscription"] == "away"


def test_webhook_500_three_times_then_200_is_delivered_once(rig: Rig) -> None:
    rig.subscribe(id="ops")
    rig.hook.reply(500, 500, 500, 200)
    rig.route(make_match("w1", "Satellite launch delayed", ""))
    for attempt in range(1, 4):  # each retry becomes due when the clock passes its backoff

        def attempted(n: int = attempt) -> bool:
            return len(rig.hook.all()) == n

        drive(rig.dispatcher, attempted)
        rig.clock.advance(120)
    drive(rig.dispatcher, lambda: rig.store.deliveries()[0].status == "delivered")
    assert [h.status for h in rig.hook.all()] == [500, 500, 500, 200]
    assert {h.headers["webhook-id"] for h in rig.hook.all()} == {alert_id_for("ops", "w1______")}
    (row,) = rig.store.deliveries()
    assert (row.status, row.attempts) == ("delivered", 4)
    failed = {"channel": "webhook", "class": "transient", "reason": "http_5xx"}
    assert rig.sample("newswatch_notifier_delivery_attempts_failed_total", **failed) == 3
    delivered = {"channel": "webhook", "kind": "alert", "outcome": "delivered"}
    assert rig.sample("newswatch_notifier_deliveries_total", **delivered) == 1
    rig.clock.advance(3600)
    rig.dispatcher.run_once()
    assert len(rig.hook.all()) == 4


def test_retry_after_is_honoured(rig: Rig) -> None:
    rig.subscribe(id="ops")
    rig.hook.reply(429, headers={"Retry-After": "600"})
    rig.route(make_match("ra", "Parliament dissolved", ""))
    drive(rig.dispatcher, lambda: rig.store.deliveries()[0].attempts == 1)
    (row,) = rig.store.deliveries()
    assert row.status == "pending" and row.next_attempt_at >= rig.clock() + 600


def test_410_is_dead_lettered_with_its_reason(rig: Rig, broker: EmbeddedBroker) -> None:
    rig.subscribe(id="gone")
    rig.hook.reply(410)
    rig.route(make_match("g1", "Mayor resigns", ""))
    drive(rig.dispatcher, lambda: rig.store.deliveries()[0].status == "dead")
    (row,) = rig.store.deliveries(status="dead")
    assert (row.failure, row.attempts) == ("http_4xx", 1) and "HTTP 410" in (row.last_error or "")
    dlq = read_records(broker.bootstrap, DLQ)
    headers = {k: v.decode() for k, v in dlq[0].headers}
    assert headers["subscription_id"] == "gone" and "HTTP 410" in headers["error"]
    failed = {"channel": "webhook", "class": "permanent", "reason": "http_4xx"}
    assert rig.sample("newswatch_notifier_delivery_attempts_failed_total", **failed) == 1


def test_refused_email_recipient_is_permanent(rig: Rig) -> None:
    rig.smtp.refuse["nobody@newswatch.test"] = "550 5.1.1 no such user"
    rig.subscribe(id="bounce", to="mailto:nobody@newswatch.test")
    rig.route(make_match("e1", "Museum reopens", ""))
    drive(rig.dispatcher, lambda: rig.store.deliveries()[0].status == "dead")
    assert rig.store.deliveries()[0].failure == "smtp_5xx"


def test_updates_are_suppressed_unless_asked_for(rig: Rig) -> None:
    rig.subscribe(id="plain")
    rig.subscribe(id="updates", updates=True)
    rig.route(make_match("u1", "Ceasefire talks begin", ""))
    updated = make_match("u1", "Ceasefire talks begin in Geneva", "", revision=2)
    assert rig.route(updated) == [{"plain": "update_suppressed", "updates": "update"}]
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 3)
    revisions = sorted((b["subscription"], b["item"]["revision"]) for b in rig.bodies())
    assert revisions == [("plain", 1), ("updates", 1), ("updates", 2)]


def test_consumed_matches_are_routed_before_the_offset_commit(
    rig: Rig, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    rig.subscribe(id="ops")
    intake = MatchProcessor(Routes(rig.db.catalog), rig.router, rig.metrics, handoff=rig.dispatcher)
    consumer = make_consumer(broker.bootstrap, kafka_settings, "notifier-test", "n")
    consumer.subscribe([MATCHES])
    loop = ConsumerLoop(
        consumer, intake, rig.publisher, rig.metrics.pipeline, "notifier", LoopPolicy(poll_timeout_ms=200)
    )
    match = make_match("k1", "Border crossing reopens", "")
    rig.publisher.publish(
        [
            Record(MATCHES, "nk", encode(match)),
            Record(MATCHES, "nk", encode(match)),
            Record(MATCHES, "nk", b'{"v": 9}'),
        ]
    )
    try:
        wait_for(
            lambda: (
                loop.run_once() is not None
                and rig.sample("newswatch_notifier_matches_received_total") >= 2
                and rig.sample("newswatch_dlq_total", source_topic=MATCHES, reason="decode") == 1
            ),
            60,
            interval=0.01,
            what="all matches consumed",
        )
    finally:
        consumer.close()
    assert rig.sample("newswatch_notifier_routed_total", outcome="queued") == 1
    assert rig.sample("newswatch_notifier_routed_total", outcome="repeat") == 1
    assert rig.sample("newswatch_notifier_duplicates_suppressed_total") == 1
    # Handed to the dispatcher by the intake: sent without a claim.
    wait_for(lambda: len(rig.hook.delivered()) == 1, 10, what="the handed-over alert")
    wait_for(rig.dispatcher.idle, 10, what="its outcome recorded")
    assert rig.store.deliveries()[0].status == "delivered"


def test_other_urls_go_through_apprise(rig: Rig) -> None:
    """Apprise's own JSON plugin posts to a real endpoint: no hand-written sender involved."""
    apprise_url = rig.hook.url.replace("http://", "json://")
    rig.subscribe(id="chat", to=apprise_url)
    rig.route(make_match("ap1", "Glacier collapse in the Alps", "A village was evacuated."))
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 1)
    body = rig.bodies()[0]
    assert body["title"] == "[nk] Glacier collapse in the Alps"
    assert "**Glacier**" in body["message"] and "[Glacier collapse in the Alps]" in body["message"]
    assert rig.store.deliveries()[0].channel == "apprise"


def test_old_state_is_pruned(rig: Rig) -> None:
    rig.subscribe(id="ops")
    rig.route(make_match("p1", "Old story", ""))
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 1)
    assert rig.dispatcher.prune(retention=30 * 86400.0) == 0
    rig.clock.advance(31 * 86400.0)
    assert rig.dispatcher.prune(retention=30 * 86400.0) == 2  # the story and the delivery
    assert rig.store.deliveries() == [] and rig.sample("newswatch_notifier_pruned_rows_total") == 2
    assert rig.route(make_match("p1", "Old story", "")) == [{"ops": "queued"}]  # a month later: news again


def test_stored_topics_repair_a_wiped_broker(
    rig: Rig, broker: EmbeddedBroker, kafka_settings: KafkaSettings
) -> None:
    config = Config(
        topics=(TopicConfig(id="nk", query="Korea"),),
        subscriptions=(SubscriptionConfig(id="ops", topics=("nk",), to=rig.hook.url),),
    )
    reconcile(rig.db.catalog, config)
    rig.db.catalog.put_topic("api-made", "volcano Iceland", "alice")
    assert publish_topics(rig.db.catalog, rig.publisher) == 2
    published = {
        json.loads(r.value)["id"]: json.loads(r.value)["query"] for r in read_records(rig.bootstrap, TOPICS)
    }
    assert published == {"nk": "Korea", "api-made": "volcano Iceland"}
    stored = rig.db.catalog.subscription("ops")
    assert stored is not None and stored.owner == "config"


def test_a_hanging_webhook_does_not_hold_up_other_subscriptions(rig: Rig) -> None:
    release = threading.Event()
    stuck = HookServer(hold=release).start()
    try:
        rig.subscribe(id="slow", to=stuck.url)
        rig.subscribe(id="fast")
        rig.route(make_match("h1", "Dam bursts after storm", ""))
        drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 1, timeout=5)  # while "slow" hangs
        assert rig.bodies()[0]["subscription"] == "fast" and not stuck.all()
    finally:
        release.set()
        stuck.stop()


def test_alerts_not_sent_within_max_age_are_abandoned_unsent(rig: Rig) -> None:
    """A delivery whose budget ran out while nothing could send it (the notifier was away)
    is abandoned without a late send."""
    rig.subscribe(id="ops")
    rig.hook.reply(503)
    rig.route(make_match("x1", "Election results delayed", ""))
    drive(rig.dispatcher, lambda: rig.store.deliveries()[0].attempts == 1)
    rig.clock.advance(NotifierSettings().max_age + rig.dispatcher.lease + 1)
    drive(rig.dispatcher, lambda: rig.store.deliveries()[0].status == "dead")
    (row,) = rig.store.deliveries()
    assert row.failure == "expired" and len(rig.hook.all()) == 1


def test_email_over_starttls_with_login(rig: Rig, tmp_path: Path) -> None:
    """A real SMTP server that requires STARTTLS (a certificate made for the test) and AUTH."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    secure = SmtpSink(tls=server_tls, login=("newswatch", "s3cret")).start()
    settings = SmtpSettings(
        host="127.0.0.1",
        port=secure.port,
        security="starttls",
        username="newswatch",
        password=SecretStr("s3cret"),
        ca_file=cert,
    )
    out = Outgoing(
        "m1",
        "sub",
        "mailto:desk@newswatch.test",
        "",
        ["m1"],
        [MATCH_FOR_MAIL],
        [view(MATCH_FOR_MAIL, [])],
        False,
        START,
    )
    try:
        EmailChannel(Mailer(settings, NetGuard(LOOPBACK))).send(out)
        assert len(secure.received()) == 1
        with pytest.raises(DeliveryError) as wrong_password:
            EmailChannel(
                Mailer(settings.model_copy(update={"password": SecretStr("guess")}), NetGuard(LOOPBACK))
            ).send(out)
        assert wrong_password.value.reason == "smtp_5xx", str(wrong_password.value)
        with pytest.raises(DeliveryError) as untrusted:  # the system CAs do not know the test's certificate
            EmailChannel(Mailer(settings.model_copy(update={"ca_file": None}), NetGuard(LOOPBACK))).send(out)
        assert (untrusted.value.permanent, untrusted.value.reason) == (False, "network")
    finally:
        secure.stop()
    assert len(secure.received()) == 1


MATCH_FOR_MAIL = make_match("tls1", "Secure mail test", "")


def test_updates_follow_the_subscriptions_rhythm(rig: Rig) -> None:
    rig.subscribe(id="daily", updates=True, mode="hourly")
    rig.route(make_match("v1", "Talks stall", ""))
    assert rig.route(make_match("v1", "Talks stall, then resume", "", revision=2)) == [{"daily": "digest"}]
    rig.clock.set(START + timedelta(hours=1))
    drive(rig.dispatcher, lambda: len(rig.hook.delivered()) == 1)
    (digest,) = rig.bodies()
    assert [(a["item"]["revision"], a["item"]["title"]) for a in digest["alerts"]] == [
        (1, "Talks stall"),
        (2, "Talks stall, then resume"),
    ]


def test_a_graceful_stop_gives_back_claimed_rows_not_yet_sent(rig: Rig) -> None:
    release = threading.Event()
    stuck = HookServer(hold=release).start()
    try:
        rig.subscribe(id="slow", to=stuck.url)
        for n in range(12):  # more than the 4 senders: some rows are claimed but not started
            rig.route(make_match(f"g{n}", " ".join(f"w{n}x{i}" for i in range(6)), ""))
        assert rig.dispatcher.run_once() == 12  # all are taken; 4 are sent (4 senders), 8 wait
        wait_for(lambda: stuck.arrived == 4, 10, what="4 sends hanging")
        rig.dispatcher.close(wait=0.2)  # 4 sends hang; 8 taken rows never started
        due = rig.store.claim_due(100, lease=60)
        assert len(due) == 8  # the 8 given back; the 4 hanging keep their lease
    finally:
        release.set()
        stuck.stop()
