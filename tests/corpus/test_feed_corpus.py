"""Every feed of ../shared/corpus/feeds through the fetcher's fetch → parse → normalize path.

Files are served over local HTTP (with their `Header:` lines where feedparser's suite has
them). Asserted: nothing crashes, every produced item validates against the contract,
failures are counted with a reason, and item titles/links/dates agree with the upstream
suites' expected values in at least 98% of entries. The run prints a summary table and the
disagreements.
"""

from __future__ import annotations

import csv
import ipaddress
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from newswatch.fetcher.canonical import canonical_url
from newswatch.fetcher.errors import FetchError
from newswatch.fetcher.http_fetch import Validators, fetch, make_client
from newswatch.fetcher.normalize import feed_context, normalize_entry, plain_text
from newswatch.fetcher.parse import parse_feed
from newswatch.shared.config import FetcherSettings
from newswatch.shared.contract import ITEM_FLAGS, Item, decode, encode
from newswatch.shared.netguard import NetGuard
from tests.corpus.expected import READERS, Expected, decode_like_upstream, feedparser_expect
from tests.support.aio import Aio
from tests.support.corpus import corpus_dir

pytestmark = pytest.mark.corpus
NOT_FEEDS = {"expected-output", "license-or-doc", "feed-url-list", "kind"}
_HEADER = re.compile(r"^Header:\s+([^:]+):(.*)$", re.MULTILINE)
FETCHED_AT = datetime(2026, 11, 25, tzinfo=UTC)


def served_headers(path: Path, rel: str) -> dict[str, str]:
    """feedparser's HTTP tests (path contains "http") carry their response headers in a comment."""
    if not rel.startswith("feedparser/") or "http" not in rel:
        return {}
    text = decode_like_upstream(path.read_bytes())
    headers = {"Content-type": "text/xml"}
    for name, value in _HEADER.findall(text):
        headers[name.strip()] = value.strip()
    return headers


@pytest.fixture(scope="module")
def feeds_root() -> Path:
    return corpus_dir("feeds")


@pytest.fixture(scope="module")
def server(feeds_root: Path) -> Iterator[str]:
    root = feeds_root.resolve()  # the corpus may be reached through a symlink

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            rel = unquote(self.path.split("?", 1)[0]).lstrip("/")
            if rel.startswith("tests/"):  # feedparser's suite expects its files at /tests/…
                rel = "feedparser/" + rel
            path = (root / rel).resolve()
            if root not in path.parents or not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
            self.send_response(200)
            for name, value in served_headers(path, rel).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@dataclass
class SourceStats:
    files: int = 0
    ok: int = 0
    items: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    compared: int = 0
    agreed: int = 0
    disagreements: list[str] = field(default_factory=list)


def failure_reason(exc: FetchError) -> str:
    message = str(exc)
    for needle, short in (
        ("an HTML page", "html page"),
        ("not a recognised feed", "not a feed"),
        ("not a JSON Feed", "json, not a feed"),
        ("invalid JSON", "invalid json"),
        ("DTD entities", "dtd entities"),
        ("HTTP ", "http status"),
    ):
        if needle in message:
            return f"{exc.outcome}: {short}"
    return exc.outcome


def agrees(
    expected: tuple[str | None, str | None, datetime | None], item: Item | None, base: str
) -> list[str]:
    """The fields of one entry that disagree ([] = agrees)."""
    title, link, date = expected
    if item is None:
        return ["missing entry"]
    wrong = []
    if title is not None and plain_text(title) != item.title:
        wrong.append(f"title {plain_text(title)!r} != {item.title!r}")
    if link is not None and canonical_url(link, base) != canonical_url(item.url, base):
        wrong.append(f"link {link!r} != {item.url!r}")
    # Compared to the second: feedparser's time tuples carry no fractions of a second.
    if date is not None and ("date_missing" in item.flags or item.published != date.replace(microsecond=0)):
        wrong.append(f"date {date.isoformat()} != {item.published.isoformat() if item.published else None}")
    return wrong


def test_every_corpus_feed(aio: Aio, feeds_root: Path, server: str) -> None:
    settings = FetcherSettings(timeout=10)
    client = make_client(settings, NetGuard([ipaddress.ip_network("127.0.0.0/8")]))
    stats: dict[str, SourceStats] = defaultdict(SourceStats)
    crashes: list[str] = []
    with (feeds_root / "MANIFEST.tsv").open(newline="") as manifest:
        rows = [r for r in csv.DictReader(manifest, delimiter="\t") if r["kind"] not in NOT_FEEDS]
    assert len(rows) > 2900, "the corpus manifest lists fewer feeds than expected"
    for row in rows:
        rel = f"{row['source']}/{row['path']}"
        path = feeds_root / rel
        url = server + (row["path"] if row["source"] == "feedparser" else rel)
        source = stats[row["source"]]
        source.files += 1
        items: list[Item] = []
        try:
            result = aio(fetch(client, url, Validators(), settings))
            parsed = parse_feed(
                result.body, result.content_type, result.url, settings.max_body_bytes, result.headers
            )
            context = feed_context(
                url, parsed.title, parsed.link, parsed.language, parsed.entries, parsed.base
            )
            for entry in parsed.entries:
                item = normalize_entry(entry, context, FETCHED_AT)
                assert decode(Item, encode(item)) == item
                assert set(item.flags) <= set(ITEM_FLAGS)
                items.append(item)
        except FetchError as exc:
            source.failures[failure_reason(exc)] += 1
        except Exception as exc:  # noqa: BLE001 - a crash is what this test looks for
            crashes.append(f"{rel}: {type(exc).__name__}: {exc}")
            continue
        else:
            source.ok += 1
            source.items += len(items)
        expected: Expected | None
        if row["source"] == "feedparser":
            expected = feedparser_expect(path, server)
        else:
            reader = READERS.get(row["source"])
            expected = reader(path) if reader else None
        for index, entry in enumerate(expected or ()):
            if entry == (None, None, None):
                continue
            source.compared += 1
            wrong = agrees(entry, items[index] if index < len(items) else None, url)
            if wrong:
                source.disagreements.append(f"{rel} entry {index}: {'; '.join(wrong)}")
            else:
                source.agreed += 1
    aio(client.aclose())

    print("\nfeed corpus through fetch → parse → normalize")
    print(
        f"{'source':<16} {'files':>6} {'ok':>6} {'items':>7} {'compared':>9} {'agree':>7}  failures by reason"
    )
    for name, s in sorted(stats.items()):
        rate = f"{100 * s.agreed / s.compared:.1f}%" if s.compared else "-"
        reasons = ", ".join(f"{r} {n}" for r, n in s.failures.most_common())
        print(f"{name:<16} {s.files:>6} {s.ok:>6} {s.items:>7} {s.compared:>9} {rate:>7}  {reasons}")
    disagreements = [d for s in stats.values() for d in s.disagreements]
    print(f"\n{len(disagreements)} disagreeing entries:")
    for line in disagreements:
        print("  " + line)
    assert not crashes, "crashes:\n" + "\n".join(crashes)
    compared = sum(s.compared for s in stats.values())
    agreed = sum(s.agreed for s in stats.values())
    assert compared > 500
    assert agreed / compared >= 0.98, f"only {agreed}/{compared} entries agree with the expected values"
    low = {
        n: f"{s.agreed}/{s.compared}" for n, s in stats.items() if s.compared and s.agreed / s.compared < 0.98
    }
    assert not low, f"sources under 98% agreement: {low}"
