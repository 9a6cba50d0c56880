"""Fetcher benchmark: a local farm of feeds on 127.0.0.1 polled through the real poll path.

The farm runs in its own process. A third of its feeds answer 304 to a conditional GET,
a third change on every request, and a third return the same bytes without validators.
Each group is polled through FeedPoller (HTTP, SQLite state, embedded broker), and the
parse + normalize step is compared with bare ``feedparser.parse`` on the same bytes.

Polls run as the service runs them: coroutines on one event loop, ``--concurrency``
fetches in flight, parsing and publishing in ``--workers`` threads.

Run: ``.venv/bin/python bench/fetcher.py [--feeds 10000] [--concurrency 64] [--workers 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import feedparser
from prometheus_client import CollectorRegistry

from newswatch.fetcher.dedup import decide
from newswatch.fetcher.http_fetch import make_client
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.normalize import feed_context, normalize_entry
from newswatch.fetcher.parse import parse_feed
from newswatch.fetcher.poller import FeedPoller
from newswatch.fetcher.state import FetcherStore
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import FetcherSettings, KafkaSettings
from newswatch.shared.contract import ALL_TOPICS
from newswatch.shared.db import make_engine
from newswatch.shared.health import Health
from newswatch.shared.kafka_client import ensure_topics, producer_factory
from newswatch.shared.kafka_io import Publisher
from newswatch.shared.netguard import NetGuard
from newswatch.shared.processes import free_port

GROUPS = ("not_modified", "changed", "unchanged")


def feed_body(feed: int, version: int) -> bytes:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    items = "".join(
        f"<item><title>Feed {feed} story {n}: markets, weather and politics</title>"
        f"<link>https://news{feed % 50}.example/{feed}/{n}</link><guid>{feed}-{n}</guid>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=10 * (version - n)), usegmt=True)}</pubDate>"
        f"<description>&lt;p&gt;Paragraph about story {n} with &lt;b&gt;some&lt;/b&gt; markup and a few "
        f"sentences of text, as real feeds carry them.&lt;/p&gt;</description></item>"
        for n in range(version, version - 12, -1)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
        f"<link>https://news{feed % 50}.example/</link><description>Bench feed</description>{items}</channel></rss>"
    ).encode()


def serve_farm(port: int) -> None:
    """The farm process: /f/N.xml with behaviour by N % 3."""
    versions: dict[int, int] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            feed = int(self.path.rsplit("/", 1)[-1].split(".")[0])
            group = GROUPS[feed % 3]
            if group == "changed":
                versions[feed] = versions.get(feed, 20) + 1
            body = feed_body(feed, versions.get(feed, 20))
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            if group == "not_modified" and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            if group == "not_modified":
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


async def poll_all(poller: FeedPoller, urls: list[str], concurrency: int) -> list[str]:
    slots = asyncio.Semaphore(concurrency)

    async def one(url: str) -> str:
        async with slots:
            return (await poller.poll(url)).outcome

    return list(await asyncio.gather(*(one(u) for u in urls)))


def timed_polls(
    runner: asyncio.Runner, poller: FeedPoller, urls: list[str], concurrency: int
) -> tuple[float, float, list[str]]:
    """Poll every URL once; returns (wall seconds, CPU seconds of this process, outcomes)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    outcomes = runner.run(poll_all(poller, urls, concurrency))
    return time.perf_counter() - wall0, time.process_time() - cpu0, outcomes


def parse_ratio(bodies: list[bytes]) -> tuple[float, float]:
    """Seconds for bare feedparser.parse vs our parse + normalize + decide on the same bytes."""
    started = time.process_time()
    for body in bodies:
        feedparser.parse(body)
    bare = time.process_time() - started
    fetched_at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    started = time.process_time()
    for n, body in enumerate(bodies):
        parsed = parse_feed(body, "application/rss+xml", f"http://127.0.0.1/f/{n}.xml")
        context = feed_context(
            f"http://127.0.0.1/f/{n}.xml",
            parsed.title,
            parsed.link,
            parsed.language,
            parsed.entries,
            parsed.base,
        )
        items = [normalize_entry(e, context, fetched_at) for e in parsed.entries]
        decide(items, {}, {}, False, fetched_at, timedelta(days=1), 20)
    ours = time.process_time() - started
    return bare, ours


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    farm = multiprocessing.Process(target=serve_farm, args=(port,), daemon=True)
    farm.start()
    broker = EmbeddedBroker(free_port())
    broker.start()
    kafka = KafkaSettings(session_timeout_ms=6000, heartbeat_interval_ms=1000, send_timeout=30)
    workdir = Path(tempfile.mkdtemp(prefix="newswatch-bench-"))
    runner = asyncio.Runner()
    workers = ThreadPoolExecutor(args.workers)
    try:
        ensure_topics(broker.bootstrap, kafka, ALL_TOPICS)
        settings = FetcherSettings(
            timeout=30, concurrency=args.concurrency, workers=args.workers, per_host=args.concurrency
        )
        metrics = FetcherMetrics(CollectorRegistry())
        store = FetcherStore(make_engine(f"sqlite:///{workdir}/bench.sqlite3"), 5000)
        publisher = Publisher(
            producer_factory(broker.bootstrap, kafka, "bench"), metrics.pipeline, kafka.send_timeout
        )
        client = make_client(settings, NetGuard([ipaddress.ip_network("127.0.0.0/8")]))
        poller = FeedPoller(client, store, publisher, metrics, settings, Health(), workers)
        base = f"http://127.0.0.1:{port}/f"
        groups = {g: [f"{base}/{n}.xml" for n in range(args.feeds) if GROUPS[n % 3] == g] for g in GROUPS}
        all_urls = [u for g in GROUPS for u in groups[g]]
        warm_wall, warm_cpu, warm = timed_polls(
            runner, poller, all_urls, args.concurrency
        )  # first polls: full parse
        rows = [("first poll (all, full parse + publish)", len(all_urls), warm_wall, warm_cpu, warm)]
        for group in GROUPS:
            wall, cpu, outcomes = timed_polls(runner, poller, groups[group], args.concurrency)
            rows.append((f"second poll: {group}", len(outcomes), wall, cpu, outcomes))
        bodies = [feed_body(n, 21) for n in range(min(args.feeds, 2000))]
        parse_ratio(bodies[:50])  # load the language model outside the measurement
        bare, ours = parse_ratio(bodies)
        declared = [b.replace(b"</description>", b"</description><language>en</language>", 1) for b in bodies]
        bare_declared, ours_declared = parse_ratio(declared)
        runner.run(client.aclose())
        publisher.close()
        store.close()
    finally:
        runner.close()
        workers.shutdown()
        broker.stop()
        farm.terminate()
    cores = os.cpu_count() or 1
    print(
        f"newswatch fetcher bench: {args.feeds} feeds on 127.0.0.1, {args.concurrency} fetches in flight, "
        f"{args.workers} worker threads, {cores} cores, "
        f"Python {sys.version.split()[0]}; farm in a separate process (its CPU is not counted)"
    )
    print(f"\n{'phase':<42} {'polls':>6} {'polls/s':>8} {'CPU ms/poll':>12} {'polls/CPU-s':>12}  outcomes")
    for name, count, wall, cpu, outcomes in rows:
        tally = ", ".join(f"{o} {outcomes.count(o)}" for o in sorted(set(outcomes)))
        print(
            f"{name:<42} {count:>6} {count / wall:>8.0f} {1000 * cpu / count:>12.2f} {count / cpu:>12.0f}  {tally}"
        )
    body_kb = sum(map(len, bodies)) / len(bodies) / 1024
    print(f"\nparse step on {len(bodies)} bodies of {body_kb:.1f} KB (CPU seconds):")
    print(f"  bare feedparser.parse        {bare:.2f} s  ({len(bodies) / bare:.0f} feeds/s)")
    print(
        f"  parse + normalize + decide   {ours:.2f} s  ({len(bodies) / ours:.0f} feeds/s)  ratio {ours / bare:.2f}x"
        "  (no <language>: one language guess per feed)"
    )
    print(
        f"  feeds declaring <language>:  bare {bare_declared:.2f} s, ours {ours_declared:.2f} s,"
        f"  ratio {ours_declared / bare_declared:.2f}x"
    )
    print(
        f"\nmax RSS of the polling process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    unchanged = rows[-1][4]
    print(f"unchanged bodies re-parsed: {sum(1 for o in unchanged if o != 'unchanged')} of {len(unchanged)}")


if __name__ == "__main__":
    main()
