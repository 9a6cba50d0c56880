"""One test per row of the hardening review (issue "Harden the multi-user surface"): no query,
body, URL or record can stall, leak or pivot. Each test is named after its row and holds the
attack that worked before, with what must happen now."""

from __future__ import annotations

import io
import ipaddress
import logging
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from newswatch.fetcher.normalize import feed_context, normalize_entry
from newswatch.matcher.aliases import AliasTable
from newswatch.matcher.document import Document
from newswatch.matcher.errors import QueryError
from newswatch.matcher.evaluate import match
from newswatch.matcher.metrics import MatcherMetrics
from newswatch.matcher.parser import parse
from newswatch.matcher.service import ItemProcessor
from newswatch.matcher.topic_table import TopicTable
from newswatch.matcher.topics import Compiler
from newswatch.notifier.channels import AppriseChannel, EmailChannel, destination_refusal
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.intake import MatchProcessor, Routes
from newswatch.notifier.mailer import Mailer
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.model import Outgoing
from newswatch.notifier.render import render, view
from newswatch.notifier.router import Router
from newswatch.notifier.service import reconcile
from newswatch.notifier.stream import AlertHub, StreamFull
from newswatch.notifier.webhook import make_client, post_webhook
from newswatch.shared.config import (
    Config,
    KafkaSettings,
    NotifierSettings,
    SmtpSettings,
    SubscriptionConfig,
    load_config,
)
from newswatch.shared.contract import DLQ, ITEMS, Item, TopicDefinition, decode, encode
from newswatch.shared.errors import ConfigError, ContractError
from newswatch.shared.kafka_client import security_options
from newswatch.shared.kafka_io import ConsumerLoop, Envelope, LoopPolicy, Publisher, Record
from newswatch.shared.kafka_memory import MemoryBroker, producer_factory
from newswatch.shared.logs import setup_logging
from newswatch.shared.metrics import PipelineMetrics
from newswatch.shared.netguard import NetGuard, install_urllib3_guard
from newswatch.shared.yaml_input import YamlInputError, load
from tests.security.conftest import Api, make_api
from tests.support.hooks import HookServer
from tests.support.items import make_item
from tests.support.notifier import make_match

NOWHERE = NetGuard([])  # the default egress policy: public addresses only
LOOPBACK = NetGuard([ipaddress.ip_network("127.0.0.0/8")])
BODY = "the " * 1250  # 5,000 characters of one common word


# --- 1: query cost ---------------------------------------------------------------------------


def test_row01_query_cost_is_bounded_and_a_costly_topic_is_set_aside() -> None:
    compiler = Compiler(AliasTable(), ("en",))
    chain = " NEAR/100 ".join(["the"] * 6)  # the 94-byte query of the review, and longer
    with pytest.raises(QueryError, match="MAX_NEARS"):
        compiler.compile("t", chain)
    # Within the limits a NEAR costs what its hits cost: at most a pair per hit, not a product.
    node = parse(" NEAR/100 ".join(["the"] * 4))
    hit = match(node, Document("", BODY, "en"), compiler.algorithms)
    assert hit is not None and len(hit.spans) <= 4 * 1250
    # And a topic that still took longer than the budget is disabled; the rest keep matching.
    registry = CollectorRegistry()
    metrics = MatcherMetrics(registry)
    table = TopicTable(MemoryBroker().consumer(), metrics, compiler)
    table.topics = table.topics.updated(
        {"slow": compiler.compile("slow", "the NEAR/5 the"), "fine": compiler.compile("fine", "volcano")}
    )
    sink = _Sink()
    processor = ItemProcessor(table, sink, metrics, budget=-1.0)  # every topic is over a negative budget
    item = make_item("i1", "volcano", BODY)
    failures = processor.process([Envelope(_message(item), item)])
    assert failures == {} and table.topics.get("slow") is None and table.topics.get("fine") is None
    assert registry.get_sample_value("newswatch_matcher_topics_disabled_total") == 2
    table.topics = table.topics.updated({"fine": compiler.compile("fine", "volcano")})
    sink.records.clear()
    processor = ItemProcessor(table, sink, metrics, budget=60.0)
    processor.process([Envelope(_message(item), item)])
    assert [r.key for r in sink.records] == ["fine"]  # the matcher kept flowing


# --- 2: YAML alias bomb ----------------------------------------------------------------------

BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"


def test_row02_yaml_aliases_are_refused_small(api: Api) -> None:
    with pytest.raises(YamlInputError, match=r"anchors|aliases"):
        load(BOMB)
    response = api.call("POST", "/apply", api.admin, content=BOMB.encode())
    assert response.status_code == 422 and len(response.content) < 2_000
    assert "not accepted" in response.json()["detail"][0]["msg"]


# --- 3: egress: Apprise, SMTP ------------------------------------------------------------------


def test_row03_apprise_and_smtp_obey_the_egress_policy(api: Api) -> None:
    hook = HookServer().start()
    try:
        target = hook.url.replace("http://", "json://")
        assert destination_refusal(target, NOWHERE) is not None  # 127.0.0.1 written out: 422 at once
        for url in (
            "json://169.254.169.254/latest",
            "json://10.1.2.3/x",
            f"json://127.0.0.1:{hook.url.split(':')[2].split('/')[0]}/x",
        ):
            created = api.call("POST", "/subscriptions", api.admin, json={"id": "s", "topics": [], "to": url})
            assert created.status_code == 422
        assert "not supported" in (destination_refusal("mailtos://user:pw@evil.example/", NOWHERE) or "")
        with pytest.raises(ValidationError, match="supports over HTTP"):
            SubscriptionConfig(id="x", topics=("t",), to="xmpp://user:pw@chat.example/")
        # A name that resolves to a refused address is stopped when Apprise connects.
        install_urllib3_guard(NOWHERE)
        out = _outgoing(hook.url.replace("http://127.0.0.1", "json://localhost"))
        with pytest.raises(DeliveryError) as blocked:
            AppriseChannel().send(out)
        assert (blocked.value.permanent, blocked.value.reason) == (True, "blocked")
        assert hook.all() == []
        with pytest.raises(DeliveryError) as smtp:  # SMTP too: the server is checked like any host
            EmailChannel(Mailer(SmtpSettings(host="127.0.0.1", port=9), NOWHERE)).send(
                _outgoing("mailto:a@example.org")
            )
        assert "not a public address" in str(smtp.value) and smtp.value.reason == "blocked"
    finally:
        install_urllib3_guard(LOOPBACK)
        hook.stop()


# --- 4: deeply nested JSON ---------------------------------------------------------------------


def test_row04_deep_json_is_poison_not_a_crash_or_a_retry_loop() -> None:
    deep = b'{"v": 1, "item_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ContractError):
        decode(Item, deep)
    with pytest.raises(ContractError):
        decode(TopicDefinition, deep)
    kafka = MemoryBroker()
    kafka.ensure_topics([ITEMS, DLQ], 1)
    publisher = Publisher(producer_factory(kafka), PipelineMetrics(CollectorRegistry(), "t", "0"), 5)
    publisher.publish([Record(ITEMS, "k", deep)])
    consumer = kafka.consumer("g")
    consumer.subscribe([ITEMS])
    table = TopicTable(kafka.consumer(), MatcherMetrics(CollectorRegistry()), Compiler(AliasTable(), ("en",)))
    loop = ConsumerLoop(
        consumer,
        ItemProcessor(table, publisher, MatcherMetrics(CollectorRegistry())),
        publisher,
        PipelineMetrics(CollectorRegistry(), "t", "0"),
        "matcher",
        LoopPolicy(poll_timeout_ms=10),
    )
    loop.run_once()
    (dead,) = kafka.records(DLQ)
    assert dead.value == deep and dict(dead.headers)["error_type"] == b"ContractError"
    # On a table topic (topics, feeds) it is counted and skipped, never a crash loop.
    table._apply_all([_message_bytes(deep)])


# --- 5: ids and owners -------------------------------------------------------------------------


def test_row05_a_deleted_subscription_id_cannot_be_taken_by_another_owner(api: Api) -> None:
    api.call("PUT", "/topics/nk", api.admin, json={"query": "Korea"})
    alice, mallory = api.token("alice"), api.token("mallory")
    body = {"id": "desk", "topics": ["nk"], "to": "https://hooks.example.org/secret-path-token"}
    assert api.call("POST", "/subscriptions", alice, json=body).status_code == 201
    Router(api.db.outbox, NotifierSettings()).route(
        make_match("a1", "Korea talks"), api.db.catalog.subscriptions()
    )
    assert api.call("DELETE", "/subscriptions/desk", alice).status_code == 204
    taken = api.call("POST", "/subscriptions", mallory, json={**body, "to": "https://mallory.example.org/"})
    assert taken.status_code == 409 and "alice" not in taken.text
    assert api.call("GET", "/deliveries", mallory).json() == []  # nothing of alice's, ever
    assert api.call("GET", "/deliveries?subscription=desk", mallory).status_code == 404


# --- 6: the config never adopts a user's object --------------------------------------------------


def test_row06_config_never_adopts_a_user_subscription(api: Api) -> None:
    api.call("PUT", "/topics/nk", api.admin, json={"query": "Korea"})
    user = api.call(
        "POST",
        "/subscriptions",
        api.subscriber,
        json={"id": "ops", "topics": ["nk"], "to": "https://a.example.org/h"},
    )
    assert user.status_code == 201
    config = Config(
        topics=({"id": "cfg", "query": "Korea"},),  # type: ignore[arg-type]
        subscriptions=({"id": "ops", "topics": ["cfg"], "to": "https://ops.example.org/h"},),  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigError, match="ops"):
        reconcile(api.db.catalog, config)
    stored = api.db.catalog.subscription("ops")
    assert stored is not None and stored.owner == "sam" and stored.secret == user.json()["secret"]


# --- 7: Kafka security, apply through the API --------------------------------------------------


def test_row07_kafka_tls_and_sasl_reach_the_clients_and_apply_needs_the_api(tmp_path: Path) -> None:
    secret = tmp_path / "sasl"
    secret.write_text("pa55word\n")
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="newswatch",
        sasl_password_file=str(secret),  # type: ignore[call-arg]
        ssl_cafile=tmp_path / "ca.pem",
    )
    options = security_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_plain_password"] == "pa55word"
    assert options["ssl_cafile"].endswith("ca.pem") and "pa55word" not in repr(settings)
    with pytest.raises(ValidationError, match="needs sasl_username"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT")
    document = tmp_path / "t.yaml"
    document.write_text("topics: [{id: nk, query: Korea}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "newswatch", "apply", "-f", str(document), "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2 and "admin token" in done.stderr


# --- 8: one mailbox, no header injection --------------------------------------------------------


def test_row08_mailto_is_one_address_and_bad_headers_fail_for_good() -> None:
    for to in (
        "mailto:a@example.org,b@example.org",
        "mailto:a@example.org\r\nBcc: b@example.org",
        "mailto://a@h",
    ):
        with pytest.raises(ValidationError):
            SubscriptionConfig(id="s", topics=("t",), to=to)
    out = replace(_outgoing("mailto:desk@example.org"), to="mailto:desk@example.org\r\nBcc: all@example.org")
    with pytest.raises(DeliveryError) as failed:
        EmailChannel(Mailer(SmtpSettings(), LOOPBACK)).send(out)
    assert failed.value.permanent  # not retried until max_age


# --- 9: only web links -------------------------------------------------------------------------


def test_row09_script_links_never_reach_a_message() -> None:
    context = feed_context("https://feed.example.org/rss", "Feed", "https://feed.example.org/", "en", [])
    entry = {"id": "1", "title": "Click", "link": "javascript:alert(1)", "summary": "x"}
    item = normalize_entry(entry, context, datetime(2026, 11, 25, tzinfo=UTC))
    assert item.url == "" and item.canonical_url == ""
    forged = make_match("j1", "Forged").model_copy(
        update={"item": make_item("j1", "Forged", "").model_copy(update={"url": "javascript:alert(1)"})}
    )
    views = [view(forged, [])]
    for form in ("html", "markdown", "text"):
        assert "javascript:" not in render(views, "s", form)


# --- 10: lookback, body size, per-owner caps, backfill reach -------------------------------------


def test_row10_lookback_body_caps_and_backfill_reach_are_bounded(tmp_path: Path) -> None:
    api, server = make_api(tmp_path, NotifierSettings(max_subscriptions_per_owner=2, max_request_bytes=4096))
    try:
        far = api.call("POST", "/topics/test", api.subscriber, json={"query": "Korea", "since": "400d"})
        assert far.status_code == 422 and "max_lookback" in far.json()["detail"][0]["msg"]
        back = api.call("PUT", "/topics/nk?backfill=30d", api.admin, json={"query": "Korea"})
        assert back.status_code == 422 and back.json()["detail"][0]["loc"] == ["query", "backfill"]
        assert api.call("POST", "/apply", api.admin, content=b"x" * 5000).status_code == 413
        api.call("PUT", "/topics/nk", api.admin, json={"query": "Korea"})
        made = [
            api.call(
                "POST",
                "/subscriptions",
                api.subscriber,
                json={"id": f"s{n}", "topics": ["nk"], "to": "https://a.example.org/h"},
            ).status_code
            for n in range(3)
        ]
        assert made == [201, 201, 403]
        # A backfill's matches go to the backfiller's own subscriptions only.
        api.db.catalog.put_subscription(
            SubscriptionConfig(id="other", topics=("nk",), to="https://b.example.org/h"), "bob"
        )
        intake = MatchProcessor(
            Routes(api.db.catalog),
            Router(api.db.outbox, NotifierSettings()),
            NotifierMetrics(CollectorRegistry()),
        )
        backfilled = make_match("b1", "Korea summit", topic="nk").model_copy(update={"for_owner": "sam"})
        intake.process([Envelope(_message_bytes(encode(backfilled)), backfilled)])
        assert {d.subscription_id for d in api.db.outbox.deliveries()} == {"s0", "s1"}
    finally:
        server.stop()
        api.db.close()


# --- 11: secrets and credentials in URLs ----------------------------------------------------------


def test_row11_webhook_urls_and_secrets_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(2.0, LOOPBACK, "t")
    try:
        with pytest.raises(DeliveryError) as failed:
            post_webhook(
                client,
                "http://127.0.0.1:9/services/T000/B000/XXXXTOKEN",
                "a",
                {},
                "whsec_" + "A" * 40,
                datetime.now(UTC),
            )
    finally:
        client.close()
    assert "XXXXTOKEN" not in str(failed.value) and "127.0.0.1:9" in str(failed.value)
    password = tmp_path / "smtp-password"
    password.write_text("hunter2\n")
    monkeypatch.setenv("NEWSWATCH_NOTIFIER_SMTP_PASSWORD_FILE", str(password))
    monkeypatch.setenv("NEWSWATCH_NOTIFIER_SMTP_USERNAME", "mailer")
    monkeypatch.setenv("NEWSWATCH_DATABASE_URL", "postgresql://nw:s3cr3t@db/nw")
    config = load_config(None)
    smtp = config.notifier.smtp
    assert smtp.password is not None and smtp.password.get_secret_value() == "hunter2"
    stream = io.StringIO()
    setup_logging("test", "INFO", stream)
    logging.getLogger("test").info("config", extra={"config": config.model_dump()})
    assert "hunter2" not in stream.getvalue() and "s3cr3t" not in stream.getvalue()


# --- 12: token roles and lifecycle -----------------------------------------------------------------


def test_row12_tokens_have_roles_and_can_be_revoked(api: Api) -> None:
    assert api.call("PUT", "/topics/t", api.subscriber, json={"query": "Korea"}).status_code == 403
    assert api.call("POST", "/apply", api.subscriber, content=b"topics: []").status_code == 403
    assert api.call("GET", "/tokens", api.subscriber).status_code == 403
    assert api.call("PUT", "/topics/t", api.admin, json={"query": "Korea"}).status_code == 200
    (mine,) = [t for t in api.call("GET", "/tokens", api.admin).json() if t["owner"] == "sam"]
    assert "token" not in mine and mine["role"] == "subscriber"
    assert api.call("DELETE", f"/tokens/{mine['id']}", api.admin).status_code == 204
    assert api.call("GET", "/topics", api.subscriber).status_code == 401


# --- 13: parser recursion ---------------------------------------------------------------------------


def test_row13_deep_queries_and_yaml_are_422_not_500(api: Api) -> None:
    with pytest.raises(QueryError, match="MAX_DEPTH"):
        parse("(" * 601 + "korea" + ")" * 601)
    deep = api.call("PUT", "/topics/d", api.admin, json={"query": "(" * 601 + "x" + ")" * 601})
    assert deep.status_code == 422 and "MAX_DEPTH" in deep.json()["detail"][0]["msg"]
    nested = api.call("POST", "/apply", api.admin, content=("[" * 5000 + "]" * 5000).encode())
    assert nested.status_code == 422 and "deeper" in nested.json()["detail"][0]["msg"]


# --- 14: signing keys ----------------------------------------------------------------------------


def test_row14_a_weak_webhook_secret_is_refused() -> None:
    for weak in ("!" * 24, "whsec_" + "!" * 40, "whsec_AAAA"):
        with pytest.raises(ValidationError, match="at least 24 random bytes"):
            SubscriptionConfig(id="s", topics=("t",), to="https://a.example.org/h", secret=SecretStr(weak))


# --- 15: what errors and the docs reveal -------------------------------------------------------


def test_row15_errors_name_no_other_owners_objects_and_the_docs_need_a_token(api: Api) -> None:
    api.call("PUT", "/topics/nk", api.admin, json={"query": "Korea"})
    api.call(
        "POST",
        "/subscriptions",
        api.token("alice"),
        json={"id": "alices-desk", "topics": ["nk"], "to": "https://a.example.org/h"},
    )
    refused = api.call("DELETE", "/topics/nk", api.admin)
    assert (
        refused.status_code == 409 and "alices-desk" not in refused.text and "1 subscription" in refused.text
    )
    assert api.call("GET", "/openapi.json").status_code == 401
    assert api.call("GET", "/docs").status_code in (401, 404)


# --- 16: deployment defaults -------------------------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_row16_deploy_files_bind_locally_and_limit_egress() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:") or str(port).startswith("${NW_BIND:-127.0.0.1}:"), (
                name,
                port,
            )
    grafana = compose["services"]["grafana"]["environment"]
    assert grafana.get("GF_AUTH_ANONYMOUS_ENABLED") in ("false", False)
    postgres = compose["services"]["postgres"]["environment"]
    assert str(postgres["POSTGRES_PASSWORD"]).startswith("${POSTGRES_PASSWORD:?"), postgres
    policies = [
        doc
        for path in (DEPLOY / "k8s" / "base").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "NetworkPolicy"
    ]
    covered = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in policies}
    assert {"newswatch-fetcher", "newswatch-matcher", "newswatch-notifier"} <= covered
    notifier = next(p for p in policies if p["metadata"]["name"] == "newswatch-notifier")
    assert "Egress" in notifier["spec"]["policyTypes"]
    blocks = [
        b for rule in notifier["spec"]["egress"] for to in rule.get("to", []) if (b := to.get("ipBlock"))
    ]
    assert any("169.254.0.0/16" in b.get("except", []) for b in blocks)


# --- 17: stream clients, SMTP TLS ------------------------------------------------------------------


async def _subscribe_many(hub: AlertHub, owner: str, count: int) -> list[Any]:
    return [hub.subscribe(owner) for _ in range(count)]


def test_row17_stream_clients_are_capped_and_smtp_login_needs_tls() -> None:
    import asyncio

    hub = AlertHub(max_clients=3, max_per_owner=2)

    async def connect() -> None:
        hub.subscribe("a")
        hub.subscribe("a")
        with pytest.raises(StreamFull) as per_owner:
            hub.subscribe("a")
        assert per_owner.value.per_owner
        hub.subscribe("b")
        with pytest.raises(StreamFull):
            hub.subscribe("c")

    asyncio.run(connect())
    assert SmtpSettings(username="u", password=SecretStr("p")).security == "starttls"
    with pytest.raises(ValidationError, match="in clear"):
        SmtpSettings(username="u", password=SecretStr("p"), security="none")


# --- helpers ---------------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def publish(self, records: Any) -> list[Any]:
        self.records += records
        return []


def _message_bytes(value: bytes) -> Any:
    from newswatch.shared.kafka_io import Message

    return Message("t", 0, 0, b"k", value)


def _message(item: Item) -> Any:
    return _message_bytes(encode(item))


def _outgoing(to: str) -> Outgoing:
    m = make_match("o1", "Volcano erupts")
    return Outgoing("o1", "s", to, "whsec_" + "A" * 40, ["o1"], [m], [view(m, [])], False, datetime.now(UTC))
