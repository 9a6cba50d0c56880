"""Pipeline load and soak benchmark: fetch → match → notify, the three services as OS processes
on the embedded broker, a feed farm of ``--feeds`` feeds and ``--topics`` watch topics, a
webhook receiver recording when each alert arrives. Measured in one run:

- each stage alone on a backlog (its own broker): the fetcher polling every feed once with
  new items on it, the matcher reading items already on ``newswatch.items``, the notifier
  delivering matches already on ``newswatch.matches``: items/s and CPU per item;
- the whole pipeline: a burst of items (throughput, items and alerts per second), then a
  steady rate (end-to-end latency: the first time a feed body held the item to the webhook
  receiving its alert, so the fetcher's poll wait is left out), CPU and RSS per service;
- baselines: bare feedparser on the farm's feed bodies, raw kafka-python produce→consume of
  item-sized records on the same broker, tokenize + stem of the items, the matcher engine
  alone (in this process) on the same items and topics, and the webhook receiver's own
  capacity, measured by a plain client (8 threads, kept-alive connections);
- ``burst20``: a burst of ``--burst`` distinct items over 20 feeds (first fetch → last alert),
  as items/s and as a share of the receiver's capacity;
- ``fanout``: one item matching a topic with ``--fanout`` webhook subscriptions (the match on
  ``newswatch.matches`` → the last alert), as alerts/s and as a share of the receiver's capacity.

``--soak SECONDS`` keeps the steady rate that long and reports each service's RSS every
minute and its growth after the first five minutes.

Run: ``.venv/bin/python bench/pipeline.py [--feeds 1000] [--topics 1000] [--burst 2000]
[--only capacity,alone,burst20,fanout,pipeline]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import Stemmer
from kafka import KafkaConsumer, KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.support

from newswatch.matcher.text import WORD
from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.contract import (
    ALL_TOPICS,
    ITEMS,
    MATCHES,
    TOPICS,
    Item,
    Match,
    MatchReason,
    Source,
    TopicDefinition,
    encode,
)
from newswatch.shared.kafka_client import ensure_topics, publish_once
from newswatch.shared.kafka_io import Record
from newswatch.shared.processes import free_port
from tests.conftest import TEST_KAFKA
from tests.support.chaos import Farm, Receiver
from tests.support.pipeline import write_config
from tests.support.procs import ServiceProcess, http_ok

TICK = os.sysconf("SC_CLK_TCK")
#: A plain webhook client (a process of its own): URL, threads, requests, body → requests/s.
PLAIN_CLIENT = """
import sys, threading, time, httpx
url, threads, total, body = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
def post(count):
    with httpx.Client() as client:
        for _ in range(count):
            client.post(url, content=body, headers={"Content-Type": "application/json"})
workers = [threading.Thread(target=post, args=(total // threads,)) for _ in range(threads)]
started = time.monotonic()
for w in workers:
    w.start()
for w in workers:
    w.join()
print(total / (time.monotonic() - started))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait(probe: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Seconds until ``probe`` holds (bounded); raises with ``what`` on timeout."""
    started = time.monotonic()
    for _ in range(int(timeout / interval) + 2):
        if probe():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            break
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


@contextlib.contextmanager
def running_broker() -> Iterator[EmbeddedBroker]:
    """A fresh embedded broker for one measurement (each stage starts from empty topics)."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Tail:
    """A groupless reader of ``topics`` in a thread, from the start; ``take`` sees each batch."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def take(self, topic: str, records: list[Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            for tp, records in self._consumer.poll(timeout_ms=200).items():
                self.take(tp.topic, records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


class Counted(Tail):
    """Counts the records on one topic as they arrive."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.count = 0
        super().__init__(bootstrap, topic)

    def take(self, topic: str, records: list[Any]) -> None:
        self.count += len(records)


class Stamps(Tail):
    """When each item reached ``newswatch.items`` and its first match ``newswatch.matches``
    (the records' producer timestamps, on this machine's clock, as monotonic seconds), by
    item URL: splits end-to-end latency into the fetcher's, matcher's and notifier's hops."""

    def __init__(self, bootstrap: str) -> None:
        self.at: dict[str, dict[str, float]] = {ITEMS: {}, MATCHES: {}}
        self._offset = time.time() - time.monotonic()
        super().__init__(bootstrap, ITEMS, MATCHES)

    def take(self, topic: str, records: list[Any]) -> None:
        seen = self.at[topic]
        for record in records:
            value = json.loads(record.value)
            url = value["url"] if topic == ITEMS else value["item"]["url"]
            seen.setdefault(url, record.timestamp / 1000 - self._offset)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        topic_words = {f"t{n:04d}": f"xq{n:04d}" for n in range(args.topics)}
        self.farm = Farm(args.feeds, topic_words, seed=1, match_share=1.0).start()
        self.receiver = Receiver().up()
        ids = sorted(topic_words)
        per = max(1, len(ids) // 10)
        self.subscriptions = {f"s{n}": tuple(ids[n * per : (n + 1) * per]) for n in range(10)}
        self.results: dict[str, Any] = {}
        self.stamps: Stamps | None = None

    def config(self, tmp: Path, backfill: int = 100, **extra: Any) -> Path:
        """``backfill``: items a feed's first poll publishes (0 in the pipeline run: the items
        of the earlier runs are old news there)."""
        tmp.mkdir(parents=True, exist_ok=True)
        return write_config(
            tmp,
            **extra,
            fetcher={"start_spread": "0s", "concurrency": 64, "per_host": 64, "backfill_max_items": backfill},
            feeds=[{"url": url, "interval": f"{self.args.interval}s"} for url in self.farm.urls],
            topics=[{"id": tid, "query": word} for tid, word in sorted(self.farm.topics.items())],
            subscriptions=[
                {"id": sub, "topics": list(topics), "to": self.receiver.url}
                for sub, topics in sorted(self.subscriptions.items())
            ],
        )

    def start(self, name: str, config: Path, broker: EmbeddedBroker, tmp: Path) -> tuple[ServiceProcess, int]:
        port = free_port()
        env = {"NEWSWATCH_KAFKA_BOOTSTRAP": broker.bootstrap}
        proc = ServiceProcess(
            name, [name, "--config", str(config), "--http-port", str(port)], env, tmp
        ).start()
        wait(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 180, f"{name} ready")
        return proc, port

    # -- stages alone -----------------------------------------------------------------------

    def fetcher_alone(self) -> None:
        n = self.args.burst
        for _ in range(n):
            self.farm.publish()
        with running_broker() as broker:
            tmp = self.workdir / "fetcher-alone"
            ensure_topics(broker.bootstrap, TEST_KAFKA, ALL_TOPICS)
            counted = Counted(broker.bootstrap, ITEMS)
            proc, _ = self.start("fetcher", self.config(tmp), broker, tmp)
            try:
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                wait(lambda: counted.count >= n, 300, "the fetcher to publish the backlog", 0.05)
                self.stage("fetcher", n, time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0)
            finally:
                proc.stop()
                counted.close()

    def matcher_alone(self) -> None:
        n = self.args.burst
        entries = self.farm.entries[-n:]
        records = [Record(ITEMS, None, encode(self.item(e))) for e in entries]
        with running_broker() as broker:
            tmp = self.workdir / "matcher-alone"
            ensure_topics(broker.bootstrap, TEST_KAFKA, ALL_TOPICS)
            now = datetime.now(UTC)  # the notifier publishes the topics; here the bench does
            definitions = [
                Record(TOPICS, tid, encode(TopicDefinition(id=tid, query=word, updated_at=now)))
                for tid, word in sorted(self.farm.topics.items())
            ]
            publish_once(broker.bootstrap, TEST_KAFKA, definitions, "bench")
            proc, _ = self.start("matcher", self.config(tmp), broker, tmp)
            counted = Counted(broker.bootstrap, MATCHES)
            try:
                time.sleep(1.0)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                publish_once(broker.bootstrap, TEST_KAFKA, records, "bench")
                wait(lambda: counted.count >= n, 300, "the matcher to match the backlog", 0.05)
                self.stage("matcher", n, time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0)
            finally:
                proc.stop()
                counted.close()

    def notifier_alone(self, database: str = "sqlite") -> None:
        """The notifier on a backlog of matches, on SQLite or PostgreSQL (a fresh schema)."""
        n = self.args.burst
        entries = [e for e in self.farm.entries[-n:] if e.topic is not None]
        sub_of = {t: s for s, topics in self.subscriptions.items() for t in topics}
        entries = [e for e in entries if e.topic in sub_of]
        records = [Record(MATCHES, None, encode(self.match(e))) for e in entries]
        before = len(self.receiver.received())
        with running_broker() as broker, database_url(database) as url:
            tmp = self.workdir / f"notifier-alone-{database}"
            ensure_topics(broker.bootstrap, TEST_KAFKA, ALL_TOPICS)
            config = self.config(tmp, database_url=url) if url else self.config(tmp)
            proc, _ = self.start("notifier", config, broker, tmp)
            try:
                time.sleep(1.0)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                publish_once(broker.bootstrap, TEST_KAFKA, records, "bench")
                wait(
                    lambda: len(self.receiver.received()) - before >= len(records),
                    300,
                    "the notifier to deliver the backlog",
                    0.05,
                )
                name = "notifier" if database == "sqlite" else f"notifier ({database})"
                self.stage(name, len(records), time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0)
            finally:
                proc.stop()

    def stage(self, name: str, n: int, elapsed: float, cpu: float) -> None:
        self.results.setdefault("alone", {})[name] = {
            "items": n,
            "seconds": round(elapsed, 2),
            "items_per_s": round(n / elapsed, 1),
            "cpu_ms_per_item": round(cpu / n * 1000, 3),
        }
        print(
            f"  {name} alone: {n} in {elapsed:.1f} s = {n / elapsed:,.0f}/s, {cpu / n * 1000:.2f} ms CPU each"
        )

    def item(self, entry: Any) -> Item:
        return Item(
            item_id=entry.guid.ljust(8, "_"),
            kind="new",
            revision=1,
            title=entry.title,
            summary=entry.summary,
            url=entry.url,
            language="en",
            fetched_at=entry.published,
            source=Source(
                feed_url=self.farm.urls[entry.feed], feed_title=f"Farm {entry.feed}", host="127.0.0.1"
            ),
        )

    def match(self, entry: Any) -> Match:
        word = self.farm.topics[entry.topic]
        reason = MatchReason(terms={word: [word]}, snippet=entry.title, highlights=[], score=0.5)
        item = self.item(entry).model_copy(update={"item_id": ("n" + entry.guid).ljust(8, "_")})
        return Match(topic_id=entry.topic, query=word, item=item, reason=reason, matched_at=entry.published)

    # -- the receiver's capacity, the engine alone -------------------------------------------

    def capacity(self, requests: int = 4000) -> None:
        """What the webhook receiver answers per second to a plain client in another process
        (httpx, kept-alive connections) posting alert-sized bodies: the best of 1 and 4 threads."""
        entry = self.farm.entries[-1] if self.farm.entries else self.farm.publish()
        body = json.dumps(
            {
                "subscription": "capacity",
                "item": {"url": "capacity", "title": entry.title},
                "why": entry.summary,
            }
        )
        rates = {}
        for threads in (1, 4):
            out = subprocess.run(
                [sys.executable, "-c", PLAIN_CLIENT, self.receiver.url, str(threads), str(requests), body],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            rates[threads] = float(out.stdout.strip())
        rate = max(rates.values())
        self.results["receiver_capacity_rps"] = round(rate)
        print(
            "  receiver capacity (plain client): "
            + ", ".join(f"{t} thread(s) {r:,.0f}/s" for t, r in rates.items())
        )

    def engine(self) -> None:
        """The matcher engine in this process on the stage's items: Document + TopicSet.matches."""
        from newswatch.matcher.document import Document  # noqa: PLC0415 - the bench's only matcher use
        from newswatch.matcher.topics import Compiler, TopicSet  # noqa: PLC0415

        compiler = Compiler()
        topics = TopicSet(
            compiler, {tid: compiler.compile(tid, word) for tid, word in sorted(self.farm.topics.items())}
        )
        items = [self.item(e) for e in self.farm.entries[-self.args.burst :]]
        topics.matches(Document.from_item(items[0]))  # builds the index
        t0 = time.process_time()
        found = sum(len(topics.matches(Document.from_item(item))[0]) for item in items)
        rate = len(items) / (time.process_time() - t0)
        self.results["matcher_engine_items_per_cpu_s"] = round(rate)
        print(f"  matcher engine alone: {rate:,.0f} items per CPU-second ({found} matches)")

    # -- burst over 20 feeds, fan-out to many subscriptions -----------------------------------

    def burst20(self) -> None:
        """``--burst`` distinct items over 20 feeds, all matching, one subscription each topic."""
        n, feeds = self.args.burst, 20
        topic_words = {f"b{n:02d}": f"zq{n:02d}" for n in range(10)}
        farm = Farm(feeds, topic_words, seed=2, match_share=1.0, window=n // feeds + 20).start()
        subscriptions: dict[str, tuple[str, ...]] = {f"s{t}": (t,) for t in topic_words}
        tmp = self.workdir / "burst20"
        tmp.mkdir(parents=True, exist_ok=True)
        config = write_config(
            tmp,
            fetcher={"start_spread": "0s", "per_host": feeds, "backfill_max_items": 0},
            feeds=[{"url": url, "interval": "1s"} for url in farm.urls],
            topics=[{"id": t, "query": w} for t, w in sorted(topic_words.items())],
            subscriptions=[
                {"id": sub, "topics": list(topics), "to": self.receiver.url}
                for sub, topics in sorted(subscriptions.items())
            ],
        )
        procs: dict[str, ServiceProcess] = {}
        try:
            with running_broker() as broker:
                ensure_topics(broker.bootstrap, TEST_KAFKA, ALL_TOPICS)
                for name in ("notifier", "matcher", "fetcher"):
                    procs[name], _ = self.start(name, config, broker, tmp)
                time.sleep(4.0)  # first polls done (nothing to publish)
                cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
                for index in range(n):
                    farm.publish(feed=index % feeds)
                want = farm.expected(subscriptions)
                wait(lambda: want <= set(self.receiver.received()), 600, "every alert of the burst", 0.05)
                first = min(farm.first_served[e.url] for e in farm.entries)
                last = max(self.receiver.arrivals[a] for a in want)
                cpu = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
        finally:
            for proc in procs.values():
                proc.stop()
            farm.stop()
        elapsed = last - first
        rate = n / elapsed
        capacity = self.results.get("receiver_capacity_rps")
        self.results["burst20"] = {
            "items": n,
            "feeds": feeds,
            "seconds_first_fetch_to_last_alert": round(elapsed, 2),
            "items_per_s": round(rate, 1),
            "share_of_receiver_capacity": round(rate / capacity, 3) if capacity else None,
            "cpu_ms_per_item": {k: round(v / n * 1000, 3) for k, v in cpu.items()},
        }
        share = f", {rate / capacity:.2f} of the receiver's capacity" if capacity else ""
        print(
            f"  burst over {feeds} feeds: {n} items, first fetch → last alert {elapsed:.1f} s = {rate:,.0f} items/s{share}"
        )

    def fanout(self) -> None:
        """One item matching a topic with ``--fanout`` webhook subscriptions."""
        n = self.args.fanout
        farm = Farm(1, {"fan": "zqfanout"}, seed=4, match_share=1.0).start()
        tmp = self.workdir / "fanout"
        tmp.mkdir(parents=True, exist_ok=True)
        subscriptions: dict[str, tuple[str, ...]] = {f"f{i:05d}": ("fan",) for i in range(n)}
        config = write_config(
            tmp,
            fetcher={"start_spread": "0s", "backfill_max_items": 0},
            feeds=[{"url": farm.urls[0], "interval": "1s"}],
            topics=[{"id": "fan", "query": "zqfanout"}],
            subscriptions=[{"id": sub, "topics": ["fan"], "to": self.receiver.url} for sub in subscriptions],
        )
        procs: dict[str, ServiceProcess] = {}
        stamps = None
        try:
            with running_broker() as broker:
                ensure_topics(broker.bootstrap, TEST_KAFKA, ALL_TOPICS)
                stamps = Stamps(broker.bootstrap)
                for name in ("notifier", "matcher", "fetcher"):
                    procs[name], _ = self.start(name, config, broker, tmp)
                time.sleep(4.0)
                cpu0 = cpu_seconds(procs["notifier"].pid)
                entry = farm.publish(topic="fan")
                want = farm.expected(subscriptions)
                wait(lambda: want <= set(self.receiver.received()), 600, "every alert of the fan-out", 0.05)
                wait(lambda: entry.url in stamps.at[MATCHES], 30, "the match's timestamp", 0.05)
                matched = stamps.at[MATCHES][entry.url]
                last = max(self.receiver.arrivals[a] for a in want)
                first_alert = min(self.receiver.arrivals[a] for a in want)
                cpu = cpu_seconds(procs["notifier"].pid) - cpu0
        finally:
            for proc in procs.values():
                proc.stop()
            if stamps is not None:
                stamps.close()
            farm.stop()
        elapsed = last - matched
        rate = n / elapsed
        capacity = self.results.get("receiver_capacity_rps")
        self.results["fanout"] = {
            "subscriptions": n,
            "seconds_match_to_last_alert": round(elapsed, 2),
            "seconds_match_to_first_alert": round(first_alert - matched, 3),
            "alerts_per_s": round(rate, 1),
            "share_of_receiver_capacity": round(rate / capacity, 3) if capacity else None,
            "notifier_cpu_ms_per_alert": round(cpu / n * 1000, 3),
        }
        share = f", {rate / capacity:.2f} of the receiver's capacity" if capacity else ""
        print(f"  fan-out: 1 item → {n} subscriptions in {elapsed:.2f} s = {rate:,.0f} alerts/s{share}")

    # -- the whole pipeline -----------------------------------------------------------------

    def pipeline(self) -> None:
        with running_broker() as broker:
            tmp = self.workdir / "pipeline"
            config = self.config(tmp, backfill=0)
            ensure_topics(broker.bootstrap, TEST_KAFKA, ALL_TOPICS)
            procs = {}
            self.stamps = Stamps(broker.bootstrap)
            try:
                for name in ("notifier", "matcher", "fetcher"):
                    procs[name], _ = self.start(name, config, broker, tmp)
                time.sleep(self.args.interval * 2 + 5)  # first polls done: everything old is seen
                idle = {name: rss_mb(p.pid) for name, p in procs.items()}
                self.results["idle_rss_mb"] = {k: round(v, 1) for k, v in idle.items()}
                print(f"  idle RSS: {self.fmt(idle, 'MB')}")
                self.burst(procs)
                self.steady(procs, self.args.steady, "steady")
                if self.args.soak:
                    self.steady(procs, self.args.soak, "soak")
            finally:
                for proc in procs.values():
                    proc.stop()
                self.stamps.close()

    def expected(self) -> set[tuple[str, str]]:
        return self.farm.expected(self.subscriptions)

    def burst(self, procs: dict[str, ServiceProcess]) -> None:
        n = self.args.burst
        cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        start = len(self.farm.entries)
        t0 = time.monotonic()
        for _ in range(n):
            self.farm.publish()
        want = self.expected()
        wait(lambda: want <= set(self.receiver.received()), 600, "every alert of the burst", 0.05)
        served = [self.farm.first_served[e.url] for e in self.farm.entries[start:]]
        last = max(
            self.receiver.arrivals[a] for a in want if a[1] in {e.url for e in self.farm.entries[start:]}
        )
        elapsed = last - min(served)
        cpu = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
        self.results["burst"] = {
            "items": n,
            "seconds_first_fetch_to_last_alert": round(elapsed, 2),
            "seconds_incl_poll_wait": round(last - t0, 2),
            "items_per_s": round(n / elapsed, 1),
            "cpu_ms_per_item": {k: round(v / n * 1000, 3) for k, v in cpu.items()},
        }
        print(f"  burst: {n} items, first fetch → last alert {elapsed:.1f} s = {n / elapsed:,.0f} items/s")

    def steady(self, procs: dict[str, ServiceProcess], seconds: float, label: str) -> None:
        rate = self.args.rate
        start = len(self.farm.entries)
        cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        samples: list[dict[str, float]] = []
        t0 = time.monotonic()
        next_sample = t0
        count = 0
        while time.monotonic() - t0 < seconds:
            due = t0 + count / rate
            now = time.monotonic()
            if now < due:
                time.sleep(min(due - now, 0.05))
                continue
            self.farm.publish()
            count += 1
            if now >= next_sample:
                samples.append({"t": round(now - t0), **{n: rss_mb(p.pid) for n, p in procs.items()}})
                next_sample += 60
        elapsed = time.monotonic() - t0
        want = self.expected()
        wait(lambda: want <= set(self.receiver.received()), 300, f"every alert of the {label} run", 0.1)
        urls = {e.url for e in self.farm.entries[start:]}
        alerts = [a for a in want if a[1] in urls]
        latencies = [self.receiver.arrivals[a] - self.farm.first_served[a[1]] for a in alerts]
        hops = self.hops(alerts)
        cpu = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
        result: dict[str, Any] = {
            "seconds": round(elapsed),
            "items": count,
            "items_per_s": round(count / elapsed, 1),
            "alerts": len(latencies),
            "latency_ms": {
                q: round(percentile(latencies, p) * 1000, 1)
                for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
            },
            "hop_ms_p50": hops,
            "cpu_share": {k: round(v / elapsed, 3) for k, v in cpu.items()},
            "rss_mb_end": {n: round(rss_mb(p.pid), 1) for n, p in procs.items()},
        }
        if label == "soak":
            result["rss_samples"] = samples
            base = next((s for s in samples if s["t"] >= 300), samples[0])
            result["rss_growth_after_5min"] = {
                n: round((samples[-1][n] - base[n]) / base[n] * 100, 1) for n in procs
            }
        self.results[label] = result
        lat = result["latency_ms"]
        print(
            f"  {label}: {count} items at {rate}/s over {elapsed:.0f} s, latency p50 {lat['p50']} ms, "
            f"p95 {lat['p95']} ms, p99 {lat['p99']} ms, CPU {self.fmt(result['cpu_share'], '')}"
        )
        print(f"    p50 per hop: {self.fmt(hops, ' ms')}")

    def hops(self, alerts: list[tuple[str, str]]) -> dict[str, float]:
        """Median time spent in each service: first served → on ``newswatch.items`` (fetcher),
        → first match on ``newswatch.matches`` (matcher), → the receiver's answer (notifier)."""
        assert self.stamps is not None
        items, matches = self.stamps.at[ITEMS], self.stamps.at[MATCHES]
        traced = [a for a in alerts if a[1] in items and a[1] in matches]
        spans = {
            "fetcher": [items[url] - self.farm.first_served[url] for _, url in traced],
            "matcher": [matches[url] - items[url] for _, url in traced],
            "notifier": [self.receiver.arrivals[(s, url)] - matches[url] for s, url in traced],
        }
        return {name: round(percentile(values, 0.5) * 1000, 1) for name, values in spans.items()}

    # -- baselines ------------------------------------------------------------------------

    def baselines(self) -> None:
        bodies = [self.farm.render(i) for i in range(min(200, self.args.feeds))]
        items = sum(len(feedparser.parse(b).entries) for b in bodies)
        t0 = time.process_time()
        for body in bodies:
            feedparser.parse(body)
        parse = time.process_time() - t0
        stemmer = Stemmer.Stemmer("english")
        texts = [f"{e.title} {e.summary}" for e in self.farm.entries[-self.args.burst :]]
        t0 = time.process_time()
        for text in texts:
            stemmer.stemWords(WORD.findall(text.lower()))
        stem = time.process_time() - t0
        kafka_rate = self.raw_kafka()
        self.results["baselines"] = {
            "feedparser_items_per_cpu_s": round(items / parse),
            "tokenize_stem_items_per_cpu_s": round(len(texts) / stem),
            "kafka_produce_consume_records_per_s": round(kafka_rate),
        }
        print(f"  baselines: {self.fmt(self.results['baselines'], '')}")

    def raw_kafka(self) -> float:
        n: int = self.args.burst
        value = encode(self.item(self.farm.entries[-1]))
        with running_broker() as broker:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
            consumer = KafkaConsumer("raw", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
            try:
                producer.send("raw", value).get(timeout=30)  # creates the topic
                t0 = time.monotonic()
                futures = [producer.send("raw", value) for _ in range(n)]
                for future in futures:
                    future.get(timeout=30)
                got = 0
                deadline = time.monotonic() + 120
                while got < n + 1 and time.monotonic() < deadline:
                    got += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
                return n / (time.monotonic() - t0)
            finally:
                producer.close()
                consumer.close()

    @staticmethod
    def fmt(values: dict[str, Any], unit: str) -> str:
        return ", ".join(
            f"{k} {v:,.3g}{unit}" if isinstance(v, float) else f"{k} {v:,}{unit}" for k, v in values.items()
        )

    def close(self) -> None:
        self.receiver.down()
        self.farm.stop()


@contextlib.contextmanager
def database_url(kind: str) -> Iterator[str | None]:
    """None for SQLite (the services' default), or a fresh schema in the local PostgreSQL."""
    if kind == "sqlite":
        yield None
        return
    from sqlalchemy import create_engine, text  # noqa: PLC0415 - only the PostgreSQL runs need it

    admin_url = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = create_engine(admin_url)
    schema = f"nw_bench_{os.getpid()}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


SCENARIOS = ("capacity", "alone", "burst20", "fanout", "pipeline")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls of one feed")
    parser.add_argument("--burst", type=int, default=2000, help="items of the backlog and burst runs")
    parser.add_argument("--fanout", type=int, default=1000, help="subscriptions of the fan-out run")
    parser.add_argument("--rate", type=float, default=10.0, help="items/s of the steady run")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of the steady run")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of the soak run (0: none)")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated scenarios among {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--postgres", action="store_true", help="also run the notifier alone on PostgreSQL")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="work (and keep the services' logs) in this directory")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose among {', '.join(SCENARIOS)}")
    print(
        f"newswatch pipeline bench: {args.feeds} feeds every {args.interval:g} s, {args.topics} topics, "
        f"Python {sys.version.split()[0]}, {platform.machine()}, {os.cpu_count()} cores"
    )
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = str(args.keep)
        else:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="nw-bench-"))
        bench = Bench(args, Path(workdir))
        try:
            if "capacity" in only or "burst20" in only or "fanout" in only:
                print("receiver:")
                bench.capacity()
            if "alone" in only:
                print("stages alone:")
                bench.fetcher_alone()
                bench.matcher_alone()
                bench.engine()
                bench.notifier_alone()
                if args.postgres:
                    bench.notifier_alone("postgresql")
            if "burst20" in only:
                print("burst over 20 feeds:")
                bench.burst20()
            if "fanout" in only:
                print("fan-out:")
                bench.fanout()
            if "pipeline" in only:
                print("pipeline:")
                bench.pipeline()
                print("baselines (same run):")
                bench.baselines()
        finally:
            bench.close()
    results = bench.results
    if "alone" in results and "burst" in results:
        slowest = min(results["alone"].values(), key=lambda r: r["items_per_s"])
        ratio = results["burst"]["items_per_s"] / slowest["items_per_s"]
        results["pipeline_vs_slowest_stage"] = round(ratio, 2)
        print(f"pipeline throughput / slowest stage alone: {ratio:.2f}")
    if "alone" in results and "matcher_engine_items_per_cpu_s" in results:
        ratio = results["alone"]["matcher"]["items_per_s"] / results["matcher_engine_items_per_cpu_s"]
        results["matcher_service_vs_engine"] = round(ratio, 2)
        print(f"matcher service / matcher engine (items/s): {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
