"""The WebSub subscriber against a spec-following hub over 127.0.0.1: the callback served by
the fetcher's real HTTP server, subscriptions in a real database, time moved by a clock.

Each spec failure case: a denied subscription, a request refused or never verified, a
verification nobody asked for, a bad or missing signature, a lease that ends unrenewed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from newswatch.fetcher.feed_table import owns
from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.state import FetcherStore
from newswatch.fetcher.websub import Hub
from newswatch.fetcher.websub_store import WebSubStore
from newswatch.fetcher.websub_subscriber import Subscriber
from newswatch.shared.clock import ManualClock
from newswatch.shared.config import FetcherSettings, WebSubSettings
from newswatch.shared.db import make_engine
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer, Request
from newswatch.shared.netguard import NetGuard
from tests.support.aio import Aio
from tests.support.websub_hub import SpecHub

pytestmark = pytest.mark.integration

FEED = "http://127.0.0.1:9/feed.xml"
TOPIC = "http://127.0.0.1:9/self.xml"
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'
MAX_BODY = 64 * 1024


@dataclass
class Rig:
    aio: Aio
    hub: SpecHub
    clock: ManualClock
    registry: CollectorRegistry
    store: WebSubStore
    public_url: str
    settings: WebSubSettings
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    current: list[Subscriber] = field(default_factory=list)

    @property
    def sub(self) -> Subscriber:
        return self.current[-1]

    def start(self, replica: int = 0, replicas: int = 1) -> Subscriber:
        """A subscriber (again, as after a restart) on the same database and callback address."""

        async def make() -> Subscriber:
            client = make_client(FetcherSettings(timeout=5), NetGuard([ipaddress.ip_network("127.0.0.0/8")]))
            metrics = FetcherMetrics(self.registry)
            sub = Subscriber(self.store, client, self.settings, replica, metrics, replicas, self.clock)
            sub.load(self.deliver)
            return sub

        if self.current:
            self.aio(self.sub.close(5))
            self.registry = CollectorRegistry()
        self.current.append(self.aio(make()))
        return self.sub

    def deliver(self, url: str, body: bytes, _headers: Mapping[str, str]) -> bool:
        self.delivered.append((url, body))
        return True

    def until(self, what: Callable[[], bool], step: Callable[[], None] | None = None) -> None:
        """Run the event loop (the subscriber's requests) until ``what`` holds, ticking if asked."""

        async def wait() -> None:
            for _ in range(200):
                if step is not None:
                    step()
                if what():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("condition not reached in 10 s")

        self.aio(wait())

    def run(self, action: Callable[[], None]) -> None:
        """Call a loop-side method (it starts request tasks) and let them finish."""

        async def go() -> None:
            action()
            await asyncio.sleep(0)

        self.aio(go())

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def state(self, state: str) -> float:
        return self.metric("newswatch_fetcher_websub_subscriptions", state=state)

    def callback(self) -> str:
        (form,) = {r["hub.callback"]: r for r in self.hub.requests}.values()
        return form["hub.callback"]

    def subscribe(self) -> None:
        self.run(lambda: self.sub.consider(FEED, Hub(self.hub.url, TOPIC)))
        self.until(lambda: self.sub.live(FEED) and bool(self.hub.subscribers(TOPIC)))


@pytest.fixture
def rig(aio: Aio, tmp_path: Path) -> Iterator[Rig]:
    engine = make_engine(f"sqlite:///{tmp_path}/f.sqlite3")
    FetcherStore(engine, 100)  # migrates
    registry = CollectorRegistry()
    server = ObservabilityServer("127.0.0.1", 0, registry, Health())
    server.start()
    hub = SpecHub(lease=600)
    settings = WebSubSettings(
        public_url=f"http://127.0.0.1:{server.port}", lease=600, renew_before=100, retry=60, verify_timeout=30
    )
    rig = Rig(
        aio, hub, ManualClock(1_000_000.0), registry, WebSubStore(engine), settings.public_url or "", settings
    )
    server.mount("/websub/", lambda request: _route(rig, request), MAX_BODY)
    rig.start()
    yield rig
    aio(rig.sub.close(5))
    hub.stop()
    server.stop()
    engine.dispose()


def _route(rig: Rig, request: Request) -> tuple[int, bytes]:
    return rig.sub.route(request)


def _signed(secret: str, body: bytes, algorithm: str = "sha256") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    return {"X-Hub-Signature": f"{algorithm}={digest}", "Content-Type": "application/rss+xml"}


def test_subscribe_verify_and_receive_only_signed_content(rig: Rig) -> None:
    rig.subscribe()
    (request,) = rig.hub.requests
    assert request["hub.mode"] == "subscribe" and request["hub.topic"] == TOPIC
    assert request["hub.callback"].startswith(f"{rig.public_url}/websub/")
    assert request["hub.lease_seconds"] == "600" and len(request["hub.secret"]) == 64
    assert rig.hub.verifications == [("subscribe", 200, True)]
    assert rig.state("verified") == 1 and rig.state("pending") == 0
    assert rig.metric("newswatch_fetcher_websub_requests_total", mode="subscribe", outcome="accepted") == 1

    assert rig.hub.publish(TOPIC, RSS) == [204]
    assert rig.delivered == [(FEED, RSS)]
    callback, secret = request["hub.callback"], request["hub.secret"]
    rig.hub.sign_with = "not-the-secret"
    assert rig.hub.publish(TOPIC, RSS) == [202]  # acknowledged, ignored (the spec allows the 2xx)
    unsigned = httpx.post(callback, content=RSS, headers={"Content-Type": "application/rss+xml"})
    sha1 = httpx.post(callback, content=RSS, headers=_signed(secret, RSS, "sha1"))
    assert (unsigned.status_code, sha1.status_code) == (202, 202)
    assert httpx.post(callback, content=RSS, headers=_signed(secret, RSS, "sha512")).status_code == 204
    assert len(rig.delivered) == 2
    pushes = "newswatch_fetcher_websub_pushes_total"
    assert rig.metric(pushes, outcome="processed") == 2
    assert rig.metric(pushes, outcome="bad_signature") == 2 and rig.metric(pushes, outcome="unsigned") == 1

    unknown = httpx.post(f"{rig.public_url}/websub/nobody", content=RSS, headers=_signed(secret, RSS))
    assert unknown.status_code == 410 and rig.metric(pushes, outcome="unknown") == 1
    big = b"x" * (MAX_BODY + 1)
    assert httpx.post(callback, content=big, headers=_signed(secret, big)).status_code == 413
    assert len(rig.delivered) == 2


def test_a_verification_nobody_asked_for_is_refused(rig: Rig) -> None:
    rig.subscribe()
    callback = rig.callback()
    # Nothing pending now: a replayed or forged verification of intent gets a 404.
    assert rig.hub.verify(callback, TOPIC, "subscribe") is False
    assert rig.hub.verify(callback, TOPIC, "unsubscribe") is False
    assert rig.hub.verify(f"{rig.public_url}/websub/unknown", TOPIC, "subscribe") is False
    wrong_topic = httpx.get(
        callback, params={"hub.mode": "denied", "hub.topic": "http://127.0.0.1:9/other", "hub.reason": "x"}
    )
    assert wrong_topic.status_code == 404 and rig.sub.live(FEED)
    refused = "newswatch_fetcher_websub_verifications_total"
    assert rig.metric(refused, mode="subscribe", outcome="refused") == 2
    assert rig.metric(refused, mode="unsubscribe", outcome="refused") == 1
    assert rig.metric(refused, mode="denied", outcome="refused") == 1


def test_a_denied_subscription_is_retried_after_the_backoff(rig: Rig) -> None:
    rig.hub.deny = True
    rig.run(lambda: rig.sub.consider(FEED, Hub(rig.hub.url, TOPIC)))
    rig.until(
        lambda: rig.state("denied") == 1 and bool(rig.hub.verifications)
    )  # the hub notes it after our answer
    assert not rig.sub.live(FEED) and rig.hub.verifications == [("denied", 200, False)]
    rig.hub.deny = False
    rig.clock.advance(59)
    rig.run(rig.sub.tick)
    assert len(rig.hub.requests) == 1  # not before the retry delay
    rig.clock.advance(2)
    rig.until(lambda: rig.sub.live(FEED), step=rig.sub.tick)
    assert len(rig.hub.requests) == 2 and rig.state("denied") == 0


def test_a_refused_or_unverified_request_fails_then_is_retried(rig: Rig) -> None:
    rig.hub.refuse = 403
    rig.run(lambda: rig.sub.consider(FEED, Hub(rig.hub.url, TOPIC)))
    rig.until(lambda: rig.state("failed") == 1)
    assert rig.metric("newswatch_fetcher_websub_requests_total", mode="subscribe", outcome="refused") == 1
    rig.hub.refuse = None
    rig.hub.verify_intent = False  # accepted, never verified
    rig.clock.advance(61)
    rig.until(lambda: len(rig.hub.requests) == 2, step=rig.sub.tick)
    rig.until(lambda: rig.state("pending") == 1)
    rig.clock.advance(31)  # verify_timeout
    rig.run(rig.sub.tick)
    assert rig.state("failed") == 1 and not rig.sub.live(FEED)
    rig.hub.verify_intent = True
    rig.clock.advance(120)  # the second failure doubles the wait
    rig.until(lambda: rig.sub.live(FEED), step=rig.sub.tick)
    assert len(rig.hub.requests) == 3


def test_a_hub_answering_without_end_is_read_no_further_than_its_first_bytes(rig: Rig) -> None:
    """A feed can name any hub: its answer is read up to 200 bytes, not to the end."""
    rig.hub.endless = True
    rig.run(lambda: rig.sub.consider(FEED, Hub(rig.hub.url, TOPIC)))
    rig.until(lambda: rig.state("failed") == 1)
    assert rig.metric("newswatch_fetcher_websub_requests_total", mode="subscribe", outcome="refused") == 1
    rig.until(lambda: any(r.last_error for r in rig.store.load()))  # the write lands after the state
    (row,) = rig.store.load()
    assert row.last_error is not None and row.last_error.startswith("HTTP 503 from the hub: 'busy busy")
    assert len(row.last_error) < 260


def test_a_lease_is_renewed_before_its_end_and_expires_when_renewal_fails(rig: Rig) -> None:
    rig.subscribe()
    rig.clock.advance(499)  # renewal at the lease's end (600 s) minus renew_before (100 s)
    rig.run(rig.sub.tick)
    assert len(rig.hub.requests) == 1
    rig.clock.advance(2)
    rig.until(lambda: len(rig.hub.verifications) == 2, step=rig.sub.tick)
    assert rig.hub.requests[1]["hub.callback"] == rig.hub.requests[0]["hub.callback"]
    rig.until(lambda: rig.sub.live(FEED))
    rig.hub.refuse = 503  # the hub stops renewing
    rig.clock.advance(501)
    rig.until(lambda: len(rig.hub.requests) == 3, step=rig.sub.tick)
    assert rig.sub.live(FEED)  # still verified until the lease ends
    rig.clock.advance(100)
    rig.run(rig.sub.tick)
    assert not rig.sub.live(FEED)
    rig.until(lambda: rig.state("failed") == 1)  # expired, resubscribed at once, refused
    assert rig.state("verified") == 0


def test_a_restart_keeps_the_callback_and_its_secret(rig: Rig) -> None:
    rig.subscribe()
    rig.start()
    assert rig.sub.live(FEED) and rig.state("verified") == 1
    assert rig.hub.publish(TOPIC, RSS) == [204] and rig.delivered == [(FEED, RSS)]


def test_a_replica_takes_only_the_subscriptions_of_its_own_feeds(rig: Rig) -> None:
    """Replicas may share one database: each keeps and renews the rows of the feeds it polls."""
    rig.subscribe()
    owner = next(r for r in range(2) if owns(FEED, r, 2))
    rig.start(replica=1 - owner, replicas=2)
    assert not rig.sub.live(FEED) and rig.state("verified") == 0
    assert rig.hub.publish(TOPIC, RSS) == [410] and rig.delivered == []
    rig.start(replica=owner, replicas=2)
    assert rig.sub.live(FEED) and rig.hub.publish(TOPIC, RSS) == [204]


def test_a_feed_removed_while_stopped_is_unsubscribed_at_start(rig: Rig) -> None:
    rig.subscribe()
    rig.start()
    rig.run(lambda: rig.sub.keep_only({"http://127.0.0.1:9/another.xml"}))
    rig.until(lambda: not rig.hub.subscribers(TOPIC) and rig.store.load() == [])
    assert [r["hub.mode"] for r in rig.hub.requests] == ["subscribe", "unsubscribe"]


def test_a_removed_feed_is_unsubscribed_and_its_callback_gone(rig: Rig) -> None:
    rig.subscribe()
    secret = rig.hub.requests[0]["hub.secret"]
    rig.run(lambda: rig.sub.forget(FEED))
    rig.until(lambda: not rig.hub.subscribers(TOPIC))
    assert rig.hub.requests[1]["hub.mode"] == "unsubscribe"
    assert rig.hub.verifications[-1] == ("unsubscribe", 200, True)
    rig.until(lambda: rig.state("unsubscribing") == 0 and rig.store.load() == [])
    assert httpx.post(rig.callback(), content=RSS, headers=_signed(secret, RSS)).status_code == 410


def test_a_poll_finding_what_push_missed_marks_push_silent_until_the_next_push(rig: Rig) -> None:
    rig.subscribe()
    rig.run(lambda: rig.sub.poll_found_new(FEED))
    assert not rig.sub.live(FEED) and rig.state("silent") == 1
    assert rig.hub.publish(TOPIC, RSS) == [204]
    assert rig.sub.live(FEED) and rig.state("verified") == 1
