"""Hostile feeds through the fetcher's real poll path: each refused or contained, each counted.

Reported per case: outcome, elapsed seconds, and peak Python memory (tracemalloc). The
< 2 s / < 100 MB goals are reported here and in the notes, not asserted on time (timing
assertions are flaky on shared CI machines); memory is asserted.
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
    ("/quadratic.xml", {"ok"}),  # entity refs left unexpanded
    ("/laughs.xml", {"ok"}),
    ("/xxe.xml", {"ok"}),
    ("/huge.xml", {"too_large"}),
    ("/gzip-bomb.xml", {"too_large"}),
    ("/slow-parse.xml", {"parse_error"}),  # a valid 3 MB feed, over the parse time cap
    ("/dribble.xml", {"network_error"}),
    ("/to-loopback.xml", {"blocked"}),
    ("/to-metadata.xml", {"blocked"}),
]


def test_hostile_feeds_are_refused_or_contained(
    aio: Aio, tmp_path: Path, broker: EmbeddedBroker, kafka_settings: KafkaSettings, hostile_server: str
) -> None:
    ensure_topics(broker.bootstrap, kafka_settings, ALL_TOPICS)
    settings = FetcherSettings(timeout=1.5, parse_timeout=0.5, isolate_parse_above=MB)
    metrics = FetcherMetrics(CollectorRegistry())
    store = FetcherStore(make_engine(f"sqlite:///{tmp_path}/f.sqlite3"), 100)
    publisher = Publisher(
        producer_factory(broker.bootstrap, kafka_settings, "h"), metrics.pipeline, send_timeout=5
    )
    client = make_client(settings, NetGuard([ipaddress.ip_network(f"{HOST}/32")]))
    poller = FeedPoller(client, store, publisher, metrics, settings, Health())
    rows = []
    try:
        for path, allowed in CASES:
            before = {o: metrics.polls.labels(o)._value.get() for o in allowed}
            tracemalloc.start()
            started = time.perf_counter()
            outcome = aio(poller.poll(hostile_server + path)).outcome
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append((path, outcome, elapsed, peak / MB))
            assert outcome in allowed, f"{path}: {outcome}"
            assert metrics.polls.labels(outcome)._value.get() == before[outcome] + 1
            assert peak < 100 * MB, f"{path}: peak {peak / MB:.0f} MB"
    finally:
        aio(client.aclose())
        publisher.close()
        store.close()
    print(f"\n{'case':<20} {'outcome':<14} {'seconds':>8} {'peak MB':>8}")
    for path, outcome, elapsed, peak_mb in rows:
        print(f"{path:<20} {outcome:<14} {elapsed:>8.2f} {peak_mb:>8.1f}")
    items = {i["guid"].rsplit("/", 1)[-1]: i for i in read_json(broker.bootstrap, ITEMS)}
    assert set(items) == {"q", "l", "x"}
    assert len(items["q"]["title"]) < 20_000, "the quadratic entity must not be expanded"
    assert "lollollol" not in items["l"]["title"]
    assert "root:" not in items["x"]["title"] + items["x"]["summary"], "no external entity may be read"
