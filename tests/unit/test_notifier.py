from __future__ import annotations

import io
import ipaddress
import json
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from newswatch.demo.feeds_only import serve_demo_feeds
from newswatch.demo.receiver import format_alert
from newswatch.notifier.catalog import new_secret
from newswatch.notifier.dispatcher import backoff
from newswatch.notifier.errors import DeliveryError
from newswatch.notifier.fingerprint import fingerprint
from newswatch.notifier.model import Report, alert_id_for
from newswatch.notifier.outbox import signed, unsigned
from newswatch.notifier.render import render, subject, view
from newswatch.notifier.webhook import alert_body, digest_body, make_client, post_webhook, sign
from newswatch.shared.cadence import parse_cadence, parse_quiet_hours
from newswatch.shared.config import NotifierSettings
from newswatch.shared.contract import Item, Match, MatchReason, Source
from newswatch.shared.durations import parse_retry_after
from newswatch.shared.netguard import NetGuard
from newswatch.shared.processes import free_port
from tests.support.hooks import HookServer

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
ALSO = [Report("x", "NATO chief is worried", "http://127.0.0.1/b", "Wire")]
LOOPBACK = NetGuard([ipaddress.ip_network("127.0.0.0/8")])


def test_alert_id_is_stable_per_subscription_item_and_revision() -> None:
    assert alert_id_for("ops", "i1") == alert_id_for("ops", "i1") == alert_id_for("ops", "i1", 1)
    assert alert_id_for("ops", "i1") != alert_id_for("ops2", "i1")
    assert alert_id_for("ops", "i1") != alert_id_for("ops", "i2")
    assert alert_id_for("ops", "i1", 2) != alert_id_for("ops", "i1")


def test_payload_and_terminal_rendering() -> None:
    body = alert_body("a1", "ops", MATCH, view(MATCH, ALSO), NOW)
    assert body["type"] == "newswatch.alert" and body["v"] == 1
    assert body["why"] == {
        "terms": {"Korea": ["Korean"]},
        "snippet": "North Korean troops deployed.",
        "highlights": [[6, 12]],
        "score": 0.5,
    }
    assert body["also_reported_by"] == [
        {"title": "NATO chief is worried", "url": "http://127.0.0.1/b", "source": "Wire"}
    ]
    text = format_alert(body)
    assert "North \033[1mKorean\033[0m troops" in format_alert(body, color=True)  # the hit in bold
    for expected in (
        "ALERT [nk-ukraine]",
        "NATO chief worried",
        "source: World",
        "link:   http://127.0.0.1/a",
        "Korea → Korean",
        "North Korean troops deployed.",
        "also:   Wire",
    ):
        assert expected in text
    digest = format_alert(digest_body("d1", "ops", [body, body], NOW))
    assert digest.startswith("📬 DIGEST: 2 alert(s)") and digest.count("ALERT [nk-ukraine]") == 2


def test_messages_in_text_markdown_and_html_escape_what_they_must() -> None:
    hostile = MATCH.model_copy(
        update={
            "item": MATCH.item.model_copy(update={"title": "<script>x</script> *bold* claim"}),
            "reason": MatchReason(terms={"x": ["<b>"]}, snippet="a <b> c", highlights=[(2, 5)], score=1.0),
        }
    )
    views = [view(hostile, [])]
    html = render(views, "ops", "html")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<mark>&lt;b&gt;</mark>" in html
    markdown = render(views, "ops", "markdown")
    assert "\\*bold\\*" in markdown and "**\\<b\\>**" in markdown and "<script>" not in markdown
    assert "a *<b>* c" in render(views, "ops", "text")
    assert subject(views, digest=False).startswith("[nk-ukraine] <script>")
    assert subject(views * 3, digest=True) == "newswatch digest: 3 alerts (nk-ukraine)"


def test_signatures_verify_with_the_standard_webhooks_reference_library() -> None:
    """An independent implementation (the `standardwebhooks` package) accepts what we send."""
    secret = new_secret()
    hook = HookServer().start()
    body = alert_body("a1", "ops", MATCH, view(MATCH, []), NOW)
    now = datetime.now(UTC)

    client = make_client(5.0, LOOPBACK, "newswatch-test")
    try:
        post_webhook(client, hook.url, "a1", body, secret, now)
    finally:
        client.close()
        hook.stop()
    (hit,) = hook.all()
    verified = Webhook(secret).verify(hit.raw.decode(), hit.headers)
    assert verified == json.loads(hit.raw) == body
    assert hit.headers["webhook-id"] == "a1" and hit.headers["webhook-timestamp"] == str(int(now.timestamp()))
    tampered = hit.raw.replace(b"NATO", b"NAT0")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered.decode(), hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(hit.raw.decode(), hit.headers)


def test_signature_matches_the_spec_example() -> None:
    """The example of the Standard Webhooks specification (webhooks.md, "Signature scheme")."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_webhook_success_transient_and_permanent_failures() -> None:
    hook = HookServer().start()
    hook.reply(204, 500, 429, 410, 302)
    body = alert_body("a1", "ops", MATCH, view(MATCH, []), NOW)
    secret = new_secret()

    def outcome(url: str, guard: NetGuard = LOOPBACK) -> tuple[bool, str] | None:
        client = make_client(5.0, guard, "newswatch-test")
        try:
            post_webhook(client, url, "a1", body, secret, NOW)
        except DeliveryError as exc:
            return exc.permanent, exc.reason
        finally:
            client.close()
        return None

    try:
        assert outcome(hook.url) is None
        assert hook.all()[0].headers["content-type"] == "application/json"
        expectations = [(False, "http_5xx"), (False, "http_4xx"), (True, "http_4xx"), (True, "http_other")]
        for expected in expectations:
            assert outcome(hook.url) == expected
        assert outcome(hook.url, NetGuard([])) == (True, "blocked")
        url = hook.url
    finally:
        hook.stop()
    assert outcome(url) == (False, "network")


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Wed, 25 Nov 2026 09:05:00 GMT", NOW) == 300.0
    assert parse_retry_after("Wed, 25 Nov 2026 09:05:00", NOW) == 300.0  # no zone: UTC
    assert parse_retry_after("Wed, 25 Nov 2026 08:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    settings = NotifierSettings(retry_backoff=1.0, retry_backoff_max=60.0)
    rng = random.Random(1)
    waits = [backoff(n, settings, rng) for n in range(1, 10)]
    assert 0.5 <= waits[0] <= 1.0 and 4.0 <= waits[3] <= 8.0
    assert all(30.0 <= w <= 60.0 for w in waits[6:])


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("mode", "moment", "expected"),
    [
        ("hourly", "2026-11-25T09:15:00+00:00", "2026-11-25T10:00:00+00:00"),
        ("daily at 08:00", "2026-11-25T06:59:00+00:00", "2026-11-25T07:00:00+00:00"),  # 08:00 CET
        ("daily at 08:00", "2026-11-25T07:00:00+00:00", "2026-11-26T07:00:00+00:00"),
        ("daily at 08:00", "2026-07-01T05:00:00+00:00", "2026-07-01T06:00:00+00:00"),  # 08:00 CEST
        ("weekly on monday at 09:30", "2026-11-25T12:00:00+00:00", "2026-11-30T08:30:00+00:00"),
        ("daily at 02:30", "2026-03-29T00:00:00+00:00", "2026-03-29T01:30:00+00:00"),  # skipped: runs 03:30
    ],
)
def test_digest_schedule_in_the_subscribers_zone(mode: str, moment: str, expected: str) -> None:
    due = parse_cadence(mode).next_after(datetime.fromisoformat(moment), BERLIN)
    assert due == datetime.fromisoformat(expected)


def test_quiet_hours_wrap_midnight() -> None:
    quiet = parse_quiet_hours("22:00-07:00")
    late = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)
    assert quiet.contains(late, UTC) and quiet.ends_after(late, UTC) == datetime(
        2026, 11, 26, 7, 0, tzinfo=UTC
    )
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert not quiet.contains(noon, UTC) and quiet.ends_after(noon, UTC) == noon


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("daily", "unknown mode 'daily'"),
        ("weekly on funday at 08:00", "unknown day 'funday'"),
        ("daily at 24:00", "unknown mode"),
    ],
)
def test_bad_modes_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cadence(text)
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        parse_quiet_hours("late")


def test_fingerprints_join_copies_and_keep_different_stories_apart() -> None:
    lede = "Pyongyang has sent thousands of soldiers to fight alongside Russian forces in Kursk."

    def item(title: str, summary: str = lede) -> Item:
        return MATCH.item.model_copy(update={"title": title, "summary": summary})

    base = fingerprint(item("North Korean troops deployed to Ukraine front, officials say"))
    copy = fingerprint(item("North Korean troops deployed to Ukraine front - officials say"))
    other = fingerprint(item("Stocks fall as oil prices rise", "Shares dropped on Monday as crude climbed."))
    default = NotifierSettings().duplicate_distance
    assert (base ^ copy).bit_count() <= default < (base ^ other).bit_count()
    assert unsigned(signed(base)) == base and -(1 << 63) <= signed(base) < 1 << 63


def test_subject_of_one_alert_and_of_a_digest() -> None:
    views = [view(MATCH, [])]
    assert subject(views, digest=False) == "[nk-ukraine] NATO chief worried"
    assert subject(views, digest=True) == "newswatch digest: 1 alert (nk-ukraine)"


def test_the_readme_verification_snippet_accepts_our_signatures() -> None:
    """The hand-written verifier in README.md is run as written."""
    readme = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text(encoding="utf-8")
    block = readme.split("```python\nimport base64, hashlib, hmac, time\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec("import base64, hashlib, hmac, time\n" + block, namespace)
    secret = new_secret()
    body = b'{"type": "newswatch.alert"}'
    stamp = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": "a1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, "a1", stamp, body),
    }
    assert namespace["verify"](secret, headers, body)
    assert not namespace["verify"](secret, headers, body + b" ")
    assert not namespace["verify"](new_secret(), headers, body)


def test_demo_feeds_serve_feeds_and_print_posted_alerts() -> None:
    """What the compose file's demo profile runs: feeds for the fetcher, a printer for alerts."""
    out = io.StringIO()
    stop, started = threading.Event(), threading.Event()
    feed_port, hook_port = free_port(), free_port()
    runner = threading.Thread(
        target=serve_demo_feeds,
        args=(stop, "127.0.0.1", feed_port, hook_port, "http://demo:8080"),
        kwargs={"out": out, "started": started},
    )
    runner.start()
    try:
        assert started.wait(10)
        feed = httpx.get(f"http://127.0.0.1:{feed_port}/world.xml", timeout=5).text
        assert "<rss" in feed and "http://demo:8080/" in feed  # links as the fetcher will see them
        body = alert_body("a1", "demo", MATCH, view(MATCH, []), NOW)
        assert httpx.post(f"http://127.0.0.1:{hook_port}/hook", json=body, timeout=5).status_code == 204
        operator = {  # what Alertmanager (deploy/alertmanager) posts for a firing rule
            "version": "4",
            "groupKey": '{}:{alertname="NewswatchServiceDown"}',
            "receiver": "demo-printer",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "NewswatchServiceDown", "severity": "critical"},
                    "annotations": {"summary": "newswatch matcher on matcher:9302 is not answering scrapes"},
                }
            ],
        }
        assert httpx.post(f"http://127.0.0.1:{hook_port}/hook", json=operator, timeout=5).status_code == 204
    finally:
        stop.set()
        runner.join(timeout=10)
    assert "ALERT [nk-ukraine]" in out.getvalue() and "NATO chief worried" in out.getvalue()
    assert (
        "🚨 OPERATOR ALERT (firing) NewswatchServiceDown [critical]: newswatch matcher on matcher:9302"
        in out.getvalue()
    )
