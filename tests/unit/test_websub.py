"""WebSub rules without a hub: discovery order, signatures, lease and retry timing, the
safety-net polling interval while push is live, and the settings' checks."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.parse import parse_feed
from newswatch.fetcher.politeness import HostLimiter
from newswatch.fetcher.poller import PollResult
from newswatch.fetcher.schedule import Policy
from newswatch.fetcher.service import FeedScheduler
from newswatch.fetcher.websub import Hub, callback_url, check_signature, discover, renew_at, retry_delay
from newswatch.shared.clock import ManualClock
from newswatch.shared.config import FeedConfig, FetcherSettings

ATOM = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
<link rel="hub" href="https://hub.example/"/><link rel="self" href="https://news.example/atom"/>
<entry><id>1</id><title>One</title></entry></feed>"""
RSS = b"""<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
<title>R</title><atom:link rel="hub" href="/hub"/><item><guid>1</guid><title>One</title></item></channel></rss>"""
JSON = b"""{"version": "https://jsonfeed.org/version/1.1", "title": "J", "feed_url": "https://news.example/j",
"hubs": [{"type": "rssCloud", "url": "https://cloud.example/"}, {"type": "WebSub", "url": "https://hub.example/j"}],
"items": [{"id": "1", "title": "One"}]}"""


def _links(body: bytes, content_type: str, url: str) -> object:
    return parse_feed(body, content_type, url).meta.get("links")


def test_link_headers_win_over_the_document() -> None:
    header = '<https://push.example/hub>; rel="hub", <https://news.example/self>; rel="self"'
    links = _links(ATOM, "application/atom+xml", "https://news.example/feed")
    assert discover(header, links, "https://news.example/feed") == Hub(
        "https://push.example/hub", "https://news.example/self"
    )
    assert discover("", links, "https://news.example/feed") == Hub(
        "https://hub.example/", "https://news.example/atom"
    )


def test_rss_atom_link_and_json_feed_hubs_are_found() -> None:
    rss = _links(RSS, "application/rss+xml", "https://news.example/rss")
    assert discover("", rss, "https://news.example/rss") == Hub(
        "https://news.example/hub", "https://news.example/rss"
    )  # a relative hub is resolved; no self link: the fetched URL is the topic
    json_links = _links(JSON, "application/feed+json", "https://news.example/j.json")
    assert discover("", json_links, "https://news.example/j.json") == Hub(
        "https://hub.example/j", "https://news.example/j"
    )


def test_no_hub_or_a_hub_that_is_not_http_is_none() -> None:
    assert discover("", [], "https://news.example/f") is None
    assert discover('<ftp://hub.example/>; rel="hub"', None, "https://news.example/f") is None
    assert discover("<https://a.example/>; rel=next", [{"rel": "hub"}], "https://n.example/f") is None
    assert discover('<https://h.example/>; rel="self hub"', None, "https://n.example/f") == Hub(
        "https://h.example/", "https://h.example/"
    )


def test_signatures_sha256_and_up_only() -> None:
    body, secret = b"<rss/>", "s3cret"

    def sign(algorithm: str, key: str = secret) -> str:
        return f"{algorithm}=" + hmac.new(key.encode(), body, getattr(hashlib, algorithm)).hexdigest()

    assert check_signature(sign("sha256"), secret, body) is None
    assert check_signature(sign("sha512").upper().replace("SHA512", "sha512"), secret, body) is None
    assert check_signature(sign("sha384"), secret, body) is None
    assert check_signature(sign("sha1"), secret, body) == "bad_signature"
    assert check_signature(sign("sha256", "other"), secret, body) == "bad_signature"
    assert check_signature("sha256", secret, body) == "bad_signature"
    assert check_signature("md5=abc", secret, body) == "bad_signature"
    assert check_signature(None, secret, body) == "unsigned"
    assert check_signature("", secret, body) == "unsigned"


def test_lease_renewal_and_retry_timing() -> None:
    assert renew_at(10_000.0, 864_000.0, 3600.0) == 6400.0
    assert renew_at(10_000.0, 600.0, 3600.0) == 9700.0  # at most half the lease ahead
    assert [retry_delay(n, 600.0) for n in (1, 2, 3)] == [600.0, 1200.0, 2400.0]
    assert retry_delay(40, 600.0) == 86400.0
    assert callback_url("https://f-{replica}.example/", 2, "abc") == "https://f-2.example/websub/abc"


def test_replicas_need_a_public_url_per_replica() -> None:
    with pytest.raises(ValidationError, match=r"must contain \{replica\}"):
        FetcherSettings.model_validate({"replicas": 2, "websub": {"public_url": "https://f.example"}})
    settings = FetcherSettings.model_validate(
        {"replicas": 2, "websub": {"public_url": "https://f-{replica}.example"}}
    )
    assert settings.websub.public_url == "https://f-{replica}.example"
    with pytest.raises(ValidationError, match="http:// or https://"):
        FetcherSettings.model_validate({"websub": {"public_url": "hub.example"}})


class _Push:
    """The scheduler's view of push: live or not (the subscriber itself is tested against a hub)."""

    def __init__(self, live: bool) -> None:
        self.is_live = live

    def live(self, _url: str) -> bool:
        return self.is_live


@pytest.mark.parametrize(("live", "hours"), [(True, 6.0), (False, 0.5)])
def test_live_push_stretches_polling_to_the_safety_net(live: bool, hours: float) -> None:
    clock = ManualClock(datetime(2026, 12, 5, tzinfo=UTC))
    scheduler = AsyncIOScheduler(timezone=UTC)
    feeds = FeedScheduler(
        scheduler,
        poller=None,  # type: ignore[arg-type]  # not polled here: only the planning is
        limiter=HostLimiter(2),
        concurrency=1,
        policy=Policy(300.0, 3600.0, 10),
        metrics=FetcherMetrics(CollectorRegistry()),
        clock=clock,
        rand=lambda: 0.5,
        push=_Push(live),  # type: ignore[arg-type]
        push_poll_interval=6 * 3600.0,
    )
    feed = FeedConfig(url="https://news.example/f", interval=1800.0)
    feeds.start(feed, "gone", 0.0)  # followed, and (as a gone feed) not yet scheduled
    feeds._after(feed, PollResult("ok"))
    job = scheduler.get_job(feed.url)
    assert job is not None
    assert (job.trigger.run_date - clock.now()).total_seconds() == pytest.approx(hours * 3600, rel=0.2)
