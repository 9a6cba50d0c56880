"""The fetcher's hostile-feed table, one test per attack, through the real poll path: each
refused or contained, each counted.

Printed per case: outcome, elapsed seconds, and peak Python memory (tracemalloc). Memory is
asserted; time is reported, not asserted (timing assertions are flaky on shared CI machines).
"""

from __future__ import annotations

import gzip
import ipaddress
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.poller import FeedPoller
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import FetcherSettings, KafkaSettings
from newswatch.shared.contract import ALL_TOPICS, ITEMS
from newswatch.shared.db import make_engine
from newswatch.shared.health import Health
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher
from newswatch.shared.netguard import NetGuard
from tests.support.aio import Aio
from tests.support.kafka import read_json

pytestmark = pytest.mark.integration
HOST = "127.0.0.2"  # the feed server; allow_networks opens only this address
MB = 1024 * 1024

Writer = Callable[[BaseHTTPRequestHandler], None]


def rss(items: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>{doctype}<rss version="2.0"><channel><title>Hostile</title>{items}</channel></rss>'
    ).encode()


def send(handler: BaseHTTPRequestHandler, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


big = "x" * 50_000
QUADRATIC = rss(
    "<item><guid>q</guid><title>" + "&big;" * 2000 + "</title></item>",
    f'<!DOCTYPE rss [<!ENTITY big "{big}">]>',
)
LAUGHS = rss(
    "<item><guid>l</guid><title>&l9;</title></item>",
    "<!DOCTYPE rss [<!ENTITY l0 'lol'>"
    + "".join(f"<!ENTITY l{i} '{f'&l{i - 1};' * 10}'>" for i in range(1, 10))
    + "]>",
)
XXE = rss(
    "<item><guid>x</guid><title>t &xxe;</title><description>&xxe;</description></item>",
    '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
)
GZIP_BOMB = gzip.compress(b" " * (300 * MB))
SLOW_TO_PARSE = rss(
    "".join(f"<item><guid>s{n}</guid><title>{'w ' * 60}</title></item>" for n in range(15_000))
)


def huge_body(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.end_headers()  # no Content-Length: the cap must hold while streaming
    chunk = b"<!-- padding -->" * 4096
    try:
        for _ in range(50 * MB // len(chunk)):
            handler.wfile.write(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return


def dribble(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    try:
        for byte in rss("<item><guid>d</guid></item>")[:30]:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(1.0)
    except (BrokenPipeError, ConnectionResetError):
        return


def redirect(to: str) -> Writer:
    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", to)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return write


ROUTES: dict[str, Writer] = {
    "/quadratic.xml": lambda h: send(h, QUADRATIC),
    "/laughs.xml": lambda h: send(h, LAUGHS),
    "/xxe.xml": lambda h: send(h, XXE),
    "/huge.xml": huge_body,
    "/gzip-bomb.xml": lambda h: send(h, GZIP_BOMB, {"Content-Encoding": "gzip"}),
    "/slow-parse.xml": lambda h: send(h, SLOW_TO_PARSE),
    "/dribble.xml": dribble,
    "/to-loopback.xml": redirect("http://127.0.0.1:9/feed.xml"),
    "/to-metadata.xml": redirect("http://169.254.169.254/latest/meta-data/"),
}


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ROUTES[self.path](self)

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://{HOST}:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


CASES = [
    ("/quadratic.xml", {"ok"}, "q"),  # entity refs left unexpanded
    ("/laughs.xml", {"ok"}, "l"),
    ("/xxe.xml", {"ok"}, "x"),
    ("/huge.xml", {"too_large"}, None),
    ("/gzip-bomb.xml", {"too_large"}, None),
    ("/slow-parse.xml", {"parse_error"}, None),  # a valid 3 MB feed, over the parse time cap
    ("/dribble.xml", {"network_error"}, None),
    ("/to-loopback.xml", {"blocked"}, None),
    ("/to-metadata.xml", {"blocked"}, None),
]


@pytest.mark.parametrize(
    ("path", "allowed", "guid"), CASES, ids=[c[0].strip("/").removesuffix(".xml") for c in CASES]
)
def test_hostile_feed_is_refused_or_contained(
    path: str,
    allowed: set[str],
    guid: str | None,
    aio: Aio,
    tmp_path: Path,
    broker: EmbeddedBroker,
    kafka_settings: KafkaSettings,
    hostile_server: str,
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    settings = FetcherSettings(timeout=1.5, parse_timeout=0.5, isolate_parse_above=MB)
    registry = CollectorRegistry()
    metrics = FetcherMetrics(registry)
    store = FetcherStore(make_engine(f"sqlite:///{tmp_path}/f.sqlite3"), 100)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "h"), metrics.pipeline, send_timeout=5
    )
    client = make_client(settings, NetGuard([ipaddress.ip_network(f"{HOST}/32")]))
    poller = FeedPoller(client, store, publisher, metrics, settings, Health())
    try:
        tracemalloc.start()
        started = time.perf_counter()
        outcome = aio(poller.poll(hostile_server + path)).outcome
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        aio(client.aclose())
        publisher.close()
        store.close()
    print(f"\n{path:<20} {outcome:<14} {elapsed:>6.2f} s {peak / MB:>8.1f} MB peak")
    assert outcome in allowed, f"{path}: {outcome}"
    assert registry.get_sample_value("newswatch_fetcher_polls_total", {"outcome": outcome}) == 1
    assert peak < 100 * MB, f"{path}: peak {peak / MB:.0f} MB"
    if guid is not None:
        (item,) = read_json(broker.bootstrap, ITEMS)
        assert item["guid"].rsplit("/", 1)[-1] == guid
        assert len(item["title"]) < 20_000, "an entity must not be expanded"
        assert "lollollol" not in item["title"] and "root:" not in item["title"] + item["summary"]
