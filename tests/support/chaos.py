"""The fault-injection rig: the three services as OS processes on the real broker, a feed farm
whose items arrive over time, and a webhook receiver that records every delivery.

Every item the farm publishes is made to match exactly one watch topic (or none), and each
topic has a known set of subscriptions, so the rig knows the alerts a run must produce:
``(subscription, item URL)`` pairs. A scenario breaks something while items flow, heals it,
waits for the expected set (bounded), and reports expected / received / missing /
duplicated through ``REPORT`` (printed at the end of the pytest run by the root conftest).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import ITEMS, MATCHES
from newswatch.shared.processes import free_port
from tests.support.kafka import read_records
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess, http_ok, metric_value
from tests.support.waiting import wait_for

SERVICES = ("notifier", "matcher", "fetcher")
#: Topic words: real English words that the farm's made-up filler words never contain.
TOPIC_WORDS = ("glacier", "reactor", "verdict", "harvest", "satellite", "ceasefire")
SYLLABLES = ("ka", "lo", "mi", "ru", "te", "vo", "zan", "qui", "bex", "dor", "fen", "gul", "pra", "sto")


@dataclass(frozen=True)
class Entry:
    feed: int
    guid: str
    title: str
    summary: str
    url: str
    published: datetime
    topic: str | None  # the topic id it matches, None for filler


@dataclass
class Row:
    scenario: str
    expected: int
    received: int
    missing: int
    duplicated: int
    note: str = ""


#: Rows of this pytest run, printed by ``pytest_terminal_summary`` (tests/conftest.py).
REPORT: list[Row] = []


def report_lines() -> list[str]:
    if not REPORT:
        return []
    lines = [f"{'scenario':<44} {'expected':>8} {'received':>8} {'missing':>7} {'duplicated':>10}  note"]
    lines += [
        f"{r.scenario:<44} {r.expected:>8} {r.received:>8} {r.missing:>7} {r.duplicated:>10}  {r.note}"
        for r in REPORT
    ]
    return lines


class Farm:
    """RSS feeds on 127.0.0.1 that grow while a run goes on; a feed can turn hostile.

    Modes: ``rss`` (the feed), ``entities`` (a quadratic entity blow-up), ``endless`` (a body
    that never ends, no Content-Length), ``html`` (an HTML page with a text/html type).
    """

    def __init__(
        self,
        feeds: int,
        topics: dict[str, str],
        seed: int = 7,
        match_share: float = 0.8,
        window: int = 50,
    ) -> None:
        """``window``: how many of a feed's newest entries its body lists."""
        self.rng = random.Random(seed)
        self.window = window
        self.topics = topics  # topic id → its word
        self.match_share = match_share
        self.entries: list[Entry] = []
        self.first_served: dict[str, float] = {}  # item URL → when a feed body first held it
        self.modes = ["rss"] * feeds
        self._by_feed: list[list[Entry]] = [[] for _ in range(feeds)]
        self.requests = Counter[str]()
        self._lock = threading.Lock()
        self._ids = sorted(topics)
        self._words = set(topics.values())
        self._vocab = self._filler(3000)
        farm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as feed servers do: no connect per poll
            # Headers and body are two writes: with Nagle on, the body waits for the client's
            # delayed ACK of the headers (40 ms on Linux) on every kept-alive response.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                index = int(self.path.strip("/").split(".")[0].removeprefix("feed"))
                mode = farm.modes[index]
                with farm._lock:
                    farm.requests[mode] += 1
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if mode == "endless":
                        farm._endless(self)
                    elif mode == "html":
                        farm._send(
                            self,
                            b"<html><body>" + b"<p>not a feed</p>" * 2000 + b"</body></html>",
                            "text/html",
                        )
                    elif mode == "entities":
                        farm._send(self, _QUADRATIC, "application/rss+xml")
                    else:
                        farm._send(
                            self, farm.render(index), "application/rss+xml; charset=utf-8", conditional=True
                        )

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="farm", daemon=True)

    def _filler(self, count: int) -> list[str]:
        words: set[str] = set()
        while len(words) < count:
            word = "".join(self.rng.choices(SYLLABLES, k=self.rng.randint(2, 4)))
            if not any(t[:4] in word for t in self._words):
                words.add(word)
        return sorted(words)

    @property
    def urls(self) -> list[str]:
        port = self._httpd.server_address[1]
        return [f"http://127.0.0.1:{port}/feed{i}.xml" for i in range(len(self.modes))]

    def start(self) -> Farm:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def publish(self, topic: str | None = None, feed: int | None = None) -> Entry:
        """One new item on a feed in ``rss`` mode; it matches ``topic`` (None: a random topic,
        or, one time in ``1 - match_share``, none)."""
        with self._lock:
            n = len(self.entries)
            healthy = [i for i, mode in enumerate(self.modes) if mode == "rss"]
            index = feed if feed is not None else self.rng.choice(healthy)
            if topic is None and self.rng.random() < self.match_share:
                topic = self.rng.choice(self._ids)
            words = self.rng.sample(self._vocab, 7)
            if topic is not None:
                words.insert(self.rng.randint(0, 7), self.topics[topic])
            title = " ".join(words).capitalize()
            summary = " ".join(self.rng.sample(self._vocab, 20)) + "."
            port = self._httpd.server_address[1]
            entry = Entry(
                index,
                f"item-{n}",
                title,
                summary,
                f"http://127.0.0.1:{port}/story/{n}",
                datetime.now(UTC),
                topic,
            )
            self.entries.append(entry)
            self._by_feed[index].append(entry)
            return entry

    def render(self, index: int) -> bytes:
        now = time.monotonic()
        with self._lock:
            entries = self._by_feed[index][-self.window :]
            for e in entries:
                self.first_served.setdefault(e.url, now)
        items = "".join(
            f"<item><guid isPermaLink='false'>{e.guid}</guid><title>{escape(e.title)}</title>"
            f"<link>{e.url}</link><description>{escape(e.summary)}</description>"
            f"<pubDate>{format_datetime(e.published)}</pubDate></item>"
            for e in reversed(entries)
        )
        return (
            f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Farm {index}</title>'
            f"<link>http://127.0.0.1/</link><description>chaos farm</description>{items}</channel></rss>"
        ).encode()

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, body: bytes, content_type: str, conditional: bool = False
    ) -> None:
        etag = f'"{hash(body) & 0xFFFFFFFF:08x}"'
        if conditional and handler.headers.get("If-None-Match") == etag:
            handler.send_response(304)
            handler.send_header("ETag", etag)
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        if conditional:
            handler.send_header("ETag", etag)
        handler.end_headers()
        handler.wfile.write(body)

    @staticmethod
    def _endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.send_header("Connection", "close")  # no length: the body ends with the connection
        handler.close_connection = True
        handler.end_headers()
        handler.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>endless</title>')
        chunk = b"<item><title>more</title></item>" * 2000
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded: the fetcher must cut it long before
            handler.wfile.write(chunk)

    def expected(self, subscriptions: dict[str, tuple[str, ...]]) -> set[tuple[str, str]]:
        """(subscription, item URL) of every alert the published items must cause."""
        with self._lock:
            entries = list(self.entries)
        return {(sub, e.url) for e in entries for sub, topics in subscriptions.items() if e.topic in topics}


_BIG = "x" * 50_000
_QUADRATIC = (
    f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY big "{_BIG}">]><rss version="2.0"><channel>'
    "<title>Hostile</title><item><guid>q</guid><title>" + "&big;" * 2000 + "</title></item></channel></rss>"
).encode()


class Receiver:
    """The webhook endpoint on a fixed port: can answer 503 to a share of requests, or be
    down (its socket closed: connection refused) and come back on the same port."""

    def __init__(self, fail_rate: float = 0.0, seed: int = 3) -> None:
        self.port = free_port()
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.delivered: list[tuple[str, str]] = []  # (subscription, item URL) per 2xx answer
        self.arrivals: dict[tuple[str, str], float] = {}  # first 2xx answer, monotonic time
        self.refused = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as webhook receivers do
            disable_nagle_algorithm = True  # see Farm: no delayed-ACK wait between head and body

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    failed = receiver.rng.random() < receiver.fail_rate
                    if failed:
                        receiver.refused += 1
                    else:
                        body: dict[str, Any] = json.loads(raw)
                        alert = (body["subscription"], body["item"]["url"])
                        receiver.delivered.append(alert)
                        receiver.arrivals.setdefault(alert, time.monotonic())
                self.send_response(503 if failed else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="receiver", daemon=True).start()
        return self

    def down(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def received(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.delivered)


@dataclass
class Pipeline:
    """The three services as OS processes on one config; kill -9 and restart any of them."""

    tmp_path: Path
    broker: EmbeddedBroker
    farm: Farm
    receiver: Receiver
    subscriptions: dict[str, tuple[str, ...]]
    notifier: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def start(self) -> Pipeline:
        config = write_config(
            self.tmp_path,
            kafka={"send_timeout": 10.0},
            fetcher={"start_spread": "0s", "timeout": "3s"},
            notifier={
                "topics_check": "2s",
                "retry_backoff": "200ms",
                "retry_backoff_max": "2s",
                **self.notifier,
            },
            feeds=[{"url": url, "interval": "1s"} for url in self.farm.urls],
            topics=[{"id": tid, "query": word} for tid, word in sorted(self.farm.topics.items())],
            subscriptions=[
                {"id": sub, "topics": list(topics), "to": self.receiver.url}
                for sub, topics in sorted(self.subscriptions.items())
            ],
        )
        env = {"NEWSWATCH_KAFKA_BOOTSTRAP": self.broker.bootstrap}
        for name in SERVICES:
            self.ports[name] = free_port()
            self.procs[name] = ServiceProcess(
                name,
                [name, "--config", str(config), "--http-port", str(self.ports[name])],
                env,
                self.tmp_path,
            ).start()
        for name in SERVICES:
            self.wait_ready(name)
        return self

    def wait_ready(self, name: str, timeout: float = 90.0) -> None:
        url = self.health(name)
        wait_for(lambda: http_ok(url), timeout, what=f"{name} ready")

    def health(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/readyz"

    def metric(self, name: str, metric: str, having: str = "") -> float:
        """Sum of the samples of ``metric`` on service ``name`` whose labels contain ``having``."""
        return metric_value(f"http://127.0.0.1:{self.ports[name]}/metrics", metric, having)

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        assert proc.proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        self.procs[name].start()

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs.values())

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {n} ---\n{p.log_tail(lines)}" for n, p in self.procs.items())


@contextlib.contextmanager
def rig(
    tmp_path: Path,
    broker: EmbeddedBroker,
    feeds: int = 6,
    fail_rate: float = 0.0,
    notifier: dict[str, Any] | None = None,
    fanout: int = 0,
) -> Iterator[Pipeline]:
    """A started pipeline over a farm and a receiver; on failure the services' logs are printed.
    ``fanout``: that many more subscriptions to the first topic (a fan-out per item)."""
    topics = {f"t-{word}": word for word in TOPIC_WORDS}
    ids = sorted(topics)
    subscriptions = {"ops": tuple(ids), "desk": tuple(ids[: len(ids) // 2])}
    subscriptions.update({f"fan{n:04d}": (ids[0],) for n in range(fanout)})
    farm = Farm(feeds, topics).start()
    receiver = Receiver(fail_rate).up()
    pipeline = Pipeline(tmp_path, broker, farm, receiver, subscriptions, notifier or {})
    try:
        pipeline.start()
        yield pipeline
    except BaseException:
        print(pipeline.logs())
        raise
    finally:
        pipeline.stop()
        receiver.down()
        farm.stop()


class Trickle:
    """Publishes ``count`` items on the farm, one every ``every`` seconds, in a thread."""

    def __init__(self, farm: Farm, count: int, every: float) -> None:
        self.farm, self.count, self.every = farm, count, every
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)

    def _run(self) -> None:
        for _ in range(self.count):
            if self.done.is_set():
                return
            self.farm.publish()
            time.sleep(self.every)
        self.done.set()

    def finish(self) -> None:
        """Waits until every item was published (bounded by the trickle's own length)."""
        if not self.done.wait(self.count * self.every + 30):
            raise AssertionError(f"the trickle of {self.count} items did not finish")

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self._thread.join(timeout=self.count * self.every + 5)


def wait_delivered(pipeline: Pipeline, timeout: float) -> bool:
    """Waits (bounded) until every alert expected so far arrived; False if some never did."""
    expected = pipeline.farm.expected(pipeline.subscriptions)

    def complete() -> bool:
        return expected <= set(pipeline.receiver.received())

    try:
        wait_for(complete, timeout, interval=0.5, what="every expected alert")
    except AssertionError:
        return False
    return True


def peak_rss_mb(pid: int) -> float:
    """The peak resident set of a live process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def where_lost(pipeline: Pipeline, missing: set[tuple[str, str]]) -> str:
    """Which stage lost the missing alerts: how many of their items are on newswatch.items
    (and at which partition:offset) and on newswatch.matches now (read back from the broker)."""
    urls = {url for _, url in missing}
    on: dict[str, list[str]] = {}
    for topic in (ITEMS, MATCHES):
        on[topic] = []
        for record in read_records(pipeline.broker.bootstrap, topic, idle_ms=1000):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                value = json.loads(record.value)
                if (value.get("item") or value)["url"] in urls:
                    on[topic].append(f"{record.partition}:{record.offset}")
    return (
        f"lost items: {len(urls)}, on {ITEMS}: {len(on[ITEMS])} ({' '.join(sorted(on[ITEMS]))}), "
        f"on {MATCHES}: {len(on[MATCHES])}"
    )


def settle(pipeline: Pipeline, scenario: str, timeout: float = 120.0, note: str = "") -> Row:
    """Waits (bounded) until every expected alert arrived, then records and returns the row."""
    wait_delivered(pipeline, timeout)
    expected = pipeline.farm.expected(pipeline.subscriptions)
    time.sleep(2.0)  # late duplicates still count
    received = pipeline.receiver.received()
    counts = Counter(received)
    row = Row(
        scenario,
        expected=len(expected),
        received=len(set(received) & expected),
        missing=len(expected - set(received)),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        note=note,
    )
    if row.missing:
        row.note = (row.note + " " + where_lost(pipeline, expected - set(received))).strip()
    REPORT.append(row)
    unexpected = set(received) - expected
    assert not unexpected, f"alerts nobody should have had: {sorted(unexpected)[:5]}"
    return row
