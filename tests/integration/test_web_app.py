"""The web app over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL, with the real
broker (recent items for the preview) and a real SMTP server (sign-in links, confirmations):
sessions and CSRF, the live preview, mailed links that work once and expire, double opt-in,
one-click unsubscribe, and the API's read-only cookie access. The browser tests
(``tests/e2e/test_browser.py``) drive the same pages in Chromium."""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from newswatch.matcher.aliases import AliasTable
from newswatch.matcher.topics import Compiler
from newswatch.notifier.api import ApiContext
from newswatch.notifier.database import NotifierDb
from newswatch.notifier.intake import Routes
from newswatch.notifier.mailer import Mailer
from newswatch.notifier.metrics import NotifierMetrics
from newswatch.notifier.site import ApiServer, make_app
from newswatch.notifier.stream import AlertHub
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.clock import ManualClock
from newswatch.shared.config import Config, KafkaSettings, NotifierSettings, SmtpSettings, SubscriptionConfig
from newswatch.shared.contract import ALL_TOPICS, ITEMS, encode
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher, Record
from newswatch.shared.netguard import NetGuard
from tests.support.items import make_item
from tests.support.notifier import SmtpSink

pytestmark = pytest.mark.integration
START = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
LOOPBACK = NetGuard([ipaddress.ip_network("127.0.0.0/8")])
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/(?:app/signin|confirm)/[A-Za-z0-9_-]+)")


@dataclass
class Web:
    url: str
    db: NotifierDb
    clock: ManualClock
    smtp: SmtpSink
    publisher: Publisher
    admin_token: str
    subscriber_token: str
    registry: CollectorRegistry

    def events(self, event: str) -> float:
        value = self.registry.get_sample_value("newswatch_notifier_web_events_total", {"event": event})
        assert value is not None, event
        return value

    def browser(self) -> httpx.Client:
        """A client that keeps cookies like a browser and does not follow redirects."""
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def signed_in(self, token: str) -> tuple[httpx.Client, str]:
        """A browser signed in with ``token``, and its CSRF secret."""
        browser = self.browser()
        answer = browser.post("/app/signin", data={"token": token, "next": "/app/topics"})
        assert answer.status_code == 303, answer.text
        return browser, csrf_of(browser.get("/app/topics").text)

    def mailed_link(self, to: str, count: int) -> str:
        """The link in the ``count``-th message sent to ``to``."""
        mine = [m for m in self.smtp.received() if m["To"] == to]
        assert len(mine) >= count, [m["Subject"] for m in self.smtp.received()]
        body = mine[count - 1].get_body(("plain",))
        assert body is not None
        found = LINK.search(body.get_content())
        assert found, body.get_content()
        return found.group(1).replace(self.url, "")


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


@pytest.fixture
def web(db_url: str, broker: EmbeddedBroker, kafka_settings: KafkaSettings) -> Iterator[Web]:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    clock = ManualClock(START)
    db = NotifierDb(make_engine(db_url), clock)
    smtp = SmtpSink().start()
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "test"), metrics.pipeline, send_timeout=5
    )
    config = Config(
        kafka=kafka_settings.model_copy(update={"bootstrap": broker.bootstrap}),
        allow_networks=("127.0.0.0/8",),  # type: ignore[arg-type]  # validated from text
        notifier=NotifierSettings(smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, sender="nw@test")),
    )
    context = ApiContext(
        db,
        publisher,
        Routes(db.catalog),
        config,
        AlertHub(),
        metrics=metrics,
        compiler_factory=lambda: Compiler(AliasTable([["North Korea", "DPRK", "Pyongyang"]]), ("en",)),
        mailer=Mailer(config.notifier.smtp, LOOPBACK),
    )
    server = ApiServer(make_app(context), "127.0.0.1", 0)
    server.start()
    context.bound_url = f"http://127.0.0.1:{server.bound_port}"
    admin, _ = db.tokens.create("desk", "admin", "admin", email="editor@newswatch.test")
    subscriber, _ = db.tokens.create("reader", "web", "subscriber", email="reader@newswatch.test")
    db.catalog.put_topic("nk", "North Korea troops", "desk")
    yield Web(context.bound_url, db, clock, smtp, publisher, admin, subscriber, registry)
    server.stop()
    publisher.close()
    smtp.stop()
    db.close()


# --- sessions -------------------------------------------------------------------------------


def test_a_token_signs_in_once_and_the_browser_keeps_a_safe_session(web: Web) -> None:
    browser = web.browser()
    away = browser.get("/app/subscriptions")
    assert away.status_code == 303 and away.headers["location"] == "/app/signin?next=/app/subscriptions"
    wrong = browser.post("/app/signin", data={"token": "nwt_forged", "next": "/app/topics"})
    assert wrong.status_code == 401 and "unknown, expired or revoked" in wrong.text
    answer = browser.post("/app/signin", data={"token": web.subscriber_token, "next": "//evil.example/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/app/topics"  # never off-site
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and web.subscriber_token not in cookie
    page = browser.get("/app/topics")
    assert page.status_code == 200 and "reader" in page.text and "North Korea troops" in page.text
    policy = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    )
    # Signing out ends the session on the server: the old cookie no longer works.
    stolen = dict(browser.cookies)
    assert browser.post("/app/signout", data={"csrf": csrf_of(page.text)}).status_code == 303
    replay = httpx.get(web.url + "/app/topics", cookies=stolen, follow_redirects=False)
    assert replay.status_code == 303
    assert (web.events("signin_refused"), web.events("signin_token"), web.events("signout")) == (1, 1, 1)


def test_revoking_the_token_signs_its_browsers_out(web: Web) -> None:
    browser, _csrf = web.signed_in(web.subscriber_token)
    info = web.db.tokens.authenticate(web.subscriber_token)
    assert info is not None and web.db.tokens.revoke(info.token_id)
    assert browser.get("/app/topics").status_code == 303


def test_every_form_needs_its_csrf_secret_and_this_origin(web: Web) -> None:
    browser, csrf = web.signed_in(web.admin_token)
    without = browser.post("/app/preview", data={"query": "Korea"})
    assert without.status_code == 403 and "reload the page" in without.text
    forged = browser.post(
        "/app/preview", data={"query": "Korea", "csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    by_header = browser.post("/app/preview", data={"query": "Korea"}, headers={"X-CSRF-Token": csrf})
    assert by_header.status_code == 200  # what htmx sends
    _other, other_csrf = web.signed_in(web.subscriber_token)
    assert browser.post("/app/preview", data={"query": "Korea", "csrf": other_csrf}).status_code == 403
    assert web.events("csrf_refused") == 3


def test_the_api_accepts_the_session_cookie_for_reading_only(web: Web) -> None:
    browser, _csrf = web.signed_in(web.subscriber_token)
    assert browser.get("/topics").status_code == 200
    # A write through the cookie would be a cross-site request forgery: the API needs the token.
    assert browser.put("/topics/x", json={"query": "Korea"}).status_code == 401
    assert (
        browser.post(
            "/subscriptions", json={"id": "s", "topics": ["nk"], "to": "mailto:a@b.example"}
        ).status_code
        == 401
    )


# --- the preview ----------------------------------------------------------------------------


def test_the_preview_shows_the_error_at_its_position_then_the_highlighted_hits(web: Web) -> None:
    items = [
        make_item("p1", "North Korean troops reach the front", "Pyongyang sent troops, officials say."),
        make_item("p2", "Markets rally", "Stocks rose."),
    ]
    web.publisher.publish([Record(ITEMS, i.item_id, encode(i)) for i in items])
    browser, csrf = web.signed_in(web.subscriber_token)
    typo = browser.post("/app/preview", data={"query": '"North Korea troops', "csrf": csrf})
    assert typo.status_code == 200 and 'role="alert"' in typo.text
    assert "(at character 1)" in typo.text and '<span class="caret">^</span>' in typo.text
    fixed = browser.post("/app/preview", data={"query": "DPRK troops", "csrf": csrf}).text
    assert "<strong>1</strong> of 2 recent items would match" in fixed
    assert "<mark>" in fixed and "North Korean troops reach the front" in fixed
    assert "<strong>dprk</strong> = " in fixed.lower() and "Pyongyang" in fixed  # the alias expansion
    # Without JavaScript the same form shows the preview in the page.
    plain = browser.post("/app/topics", data={"query": "DPRK troops", "action": "preview", "csrf": csrf})
    assert plain.status_code == 200 and "would match" in plain.text
    # A subscriber may test queries but not save topics.
    refused = browser.post("/app/topics", data={"id": "x", "query": "Korea", "action": "save", "csrf": csrf})
    assert refused.status_code == 422 and "Only an admin may save topics" in refused.text
    assert web.db.catalog.topic("x") is None


def test_an_admin_saves_a_topic_and_a_bad_one_is_refused_with_the_reason(web: Web) -> None:
    browser, csrf = web.signed_in(web.admin_token)
    bad = browser.post("/app/topics", data={"id": "t", "query": "(Korea", "action": "save", "csrf": csrf})
    assert bad.status_code == 422 and "Fix the query first" in bad.text and web.db.catalog.topic("t") is None
    name = browser.post(
        "/app/topics", data={"id": "Bad Name", "query": "Korea", "action": "save", "csrf": csrf}
    )
    assert name.status_code == 422 and "lowercase letters" in name.text
    ok = browser.post("/app/topics", data={"id": "kr", "query": "Korea", "action": "save", "csrf": csrf})
    assert ok.status_code == 303 and web.db.catalog.topic("kr") is not None


# --- mailed links ---------------------------------------------------------------------------


def test_a_mailed_sign_in_link_works_once_and_expires(web: Web) -> None:
    browser = web.browser()
    stranger = browser.post("/app/signin/email", data={"email": "nobody@newswatch.test"})
    known = browser.post("/app/signin/email", data={"email": "Reader@newswatch.test"})
    assert stranger.status_code == known.status_code == 200
    assert "a sign-in link is on its way" in stranger.text and "a sign-in link is on its way" in known.text
    assert [m["To"] for m in web.smtp.received()] == ["reader@newswatch.test"]  # nothing tells them apart
    again = browser.post("/app/signin/email", data={"email": "reader@newswatch.test"})
    assert again.status_code == 200 and len(web.smtp.received()) == 1  # one link a minute per address
    link = web.mailed_link("reader@newswatch.test", 1)
    page = browser.get(link)  # a mail scanner following the link spends nothing
    assert page.status_code == 200 and "reader" in page.text
    assert browser.post(link).status_code == 303 and browser.get("/app/topics").status_code == 200
    assert web.browser().post(link).status_code == 410  # once
    web.clock.advance(61)
    web.browser().post("/app/signin/email", data={"email": "reader@newswatch.test"})
    late = web.mailed_link("reader@newswatch.test", 2)
    web.clock.advance(15 * 60 + 1)
    assert web.browser().post(late).status_code == 410
    assert (web.events("signin_link_mailed"), web.events("signin_link"), web.events("link_expired")) == (
        2,
        1,
        2,
    )
    bad = browser.post("/app/signin/email", data={"email": "not an address"})
    assert bad.status_code == 422


def _subscribe(browser: httpx.Client, csrf: str, address: str, name: str = "mine") -> httpx.Response:
    form: dict[str, Any] = {
        "csrf": csrf,
        "topics": ["nk"],
        "channel": "email",
        "address": address,
        "rhythm": "immediate",
        "timezone": "UTC",
        "id": name,
    }
    return browser.post("/app/subscriptions", data=form)


def test_an_email_subscription_waits_for_its_address_to_confirm(web: Web) -> None:
    browser, csrf = web.signed_in(web.subscriber_token)
    saved = _subscribe(browser, csrf, "me@newswatch.test")
    assert saved.status_code == 303 and "confirmation link" in saved.headers["location"].replace("%20", " ")
    sub = web.db.catalog.subscription("mine")
    assert sub is not None and sub.status == "pending" and sub.owner == "reader"
    assert Routes(web.db.catalog).for_topic("nk") == []  # nothing is sent before the address agrees
    link = web.mailed_link("me@newswatch.test", 1)
    assert link.startswith("/confirm/")
    assert web.browser().get(link).status_code == 200  # a page with a button
    assert web.db.catalog.subscription("mine").status == "pending"  # type: ignore[union-attr]
    done = web.browser().post(link)
    assert done.status_code == 200 and "Confirmed" in done.text
    assert web.db.catalog.subscription("mine").status == "active"  # type: ignore[union-attr]
    assert [s.id for s in Routes(web.db.catalog).for_topic("nk")] == ["mine"]
    assert web.browser().post(link).status_code == 410  # once
    assert (web.events("confirmation_mailed"), web.events("confirmed")) == (1, 1)
    notes = [r.status for r in web.db.outbox.deliveries(subscription_id="mine")]
    assert "confirmed" in notes
    listing = browser.get("/app/subscriptions").text
    assert "me@newswatch.test (email)" in listing and "waiting for confirmation" not in listing


def test_a_confirmation_link_expires_and_a_resume_asks_again(web: Web) -> None:
    browser, csrf = web.signed_in(web.subscriber_token)
    _subscribe(browser, csrf, "late@newswatch.test", "late")
    link = web.mailed_link("late@newswatch.test", 1)
    web.clock.advance(48 * 3600 + 1)
    expired = web.browser().post(link)
    assert expired.status_code == 410 and "expired" in expired.text
    assert web.db.catalog.subscription("late").status == "pending"  # type: ignore[union-attr]
    browser, csrf = web.signed_in(web.subscriber_token)  # the session outlived? sign in afresh
    again = browser.post("/app/subscriptions/late/resume", data={"csrf": csrf})
    assert again.status_code == 303
    assert web.browser().post(web.mailed_link("late@newswatch.test", 2)).status_code == 200
    assert web.db.catalog.subscription("late").status == "active"  # type: ignore[union-attr]


def test_one_click_unsubscribe_stops_alerts_and_is_logged(web: Web) -> None:
    spec = SubscriptionConfig(id="desk", topics=("nk",), to="mailto:desk@newswatch.test")
    web.db.catalog.put_subscription(spec, "reader")
    token = web.db.capabilities.get("unsubscribe", "desk")
    page = web.browser().get(f"/u/{token}")
    assert page.status_code == 200 and "desk@newswatch.test" in page.text
    assert web.db.catalog.subscription("desk").status == "active"  # type: ignore[union-attr]
    # What a mail client sends for List-Unsubscribe-Post: no cookie, no CSRF secret.
    left = httpx.post(f"{web.url}/u/{token}", data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert left.status_code == 200 and "unsubscribed" in left.text.lower()
    assert web.db.catalog.subscription("desk").status == "unsubscribed"  # type: ignore[union-attr]
    assert Routes(web.db.catalog).for_topic("nk") == []
    log = [(r.status, r.last_error) for r in web.db.outbox.deliveries(subscription_id="desk")]
    assert ("unsubscribed", "the recipient unsubscribed (link)") in log
    assert httpx.post(f"{web.url}/u/{token}", timeout=10).status_code == 200  # again: still unsubscribed
    assert web.events("unsubscribed") == 1
    assert httpx.get(f"{web.url}/u/nope", timeout=10).status_code == 404
    # The owner's page shows it, and re-subscribing asks the address again.
    browser, csrf = web.signed_in(web.subscriber_token)
    assert "unsubscribed" in browser.get("/app/subscriptions").text
    browser.post("/app/subscriptions/desk/resume", data={"csrf": csrf})
    assert web.db.catalog.subscription("desk").status == "pending"  # type: ignore[union-attr]
    assert web.mailed_link("desk@newswatch.test", 1).startswith("/confirm/")


def test_pause_resume_delete_and_another_owners_subscription_is_invisible(web: Web) -> None:
    spec = SubscriptionConfig(id="hook", topics=("nk",), to="http://127.0.0.1:9/hook")
    web.db.catalog.put_subscription(spec, "desk")
    browser, csrf = web.signed_in(web.subscriber_token)
    assert browser.post("/app/subscriptions/hook/pause", data={"csrf": csrf}).status_code == 404
    assert browser.get("/app/subscriptions/hook/edit").status_code == 404
    admin, admin_csrf = web.signed_in(web.admin_token)
    assert admin.post("/app/subscriptions/hook/pause", data={"csrf": admin_csrf}).status_code == 303
    assert web.db.catalog.subscription("hook").status == "paused"  # type: ignore[union-attr]
    assert Routes(web.db.catalog).for_topic("nk") == []
    admin.post("/app/subscriptions/hook/resume", data={"csrf": admin_csrf})
    assert web.db.catalog.subscription("hook").status == "active"  # type: ignore[union-attr]
    assert admin.post("/app/subscriptions/hook/explode", data={"csrf": admin_csrf}).status_code == 404
    admin.post("/app/subscriptions/hook/delete", data={"csrf": admin_csrf})
    assert web.db.catalog.subscription("hook") is None


def test_a_bad_subscription_form_names_each_field(web: Web) -> None:
    browser, csrf = web.signed_in(web.subscriber_token)
    form = {
        "csrf": csrf,
        "channel": "email",
        "address": "not-an-address",
        "rhythm": "daily",
        "at": "25:00",
        "timezone": "Mars/Olympus",
        "max_per_hour": "-3",
    }
    answer = browser.post("/app/subscriptions", data=form)
    assert answer.status_code == 422 and "Please check the fields marked below" in answer.text
    for field in ("topics", "address", "timezone", "max_per_hour"):
        assert f'id="{field}-error"' in answer.text, field
    private = _subscribe(browser, csrf, "x@example.org").status_code  # fine: an address, not a host
    assert private == 303
    hook = browser.post(
        "/app/subscriptions",
        data={
            "csrf": csrf,
            "topics": ["nk"],
            "channel": "webhook",
            "address": "http://10.0.0.1/x",
            "rhythm": "immediate",
            "timezone": "UTC",
        },
    )
    assert hook.status_code == 422 and "10.0.0.1" in hook.text  # the egress policy, named on the field


def test_thread_safety_of_concurrent_previews(web: Web) -> None:
    """Ten previews at once share one read of the broker (``RecentItems``) and all answer."""
    web.publisher.publish([Record(ITEMS, "c1______", encode(make_item("c1", "North Korea troops")))])
    browser, csrf = web.signed_in(web.subscriber_token)
    results: list[int] = []

    def ask() -> None:
        with httpx.Client(base_url=web.url, cookies=browser.cookies, timeout=30) as own:
            results.append(own.post("/app/preview", data={"query": "Korea", "csrf": csrf}).status_code)

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [200] * 10
