"""A small RSS 2.0 server on 127.0.0.1, for the demo and the end-to-end tests.

Feeds are rendered from items held in memory; items can be added while it runs. It
answers conditional requests (ETag) like a well-behaved news site, so the fetcher's
304 path is exercised too.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from newswatch.demo.content import FEEDS


@dataclass(frozen=True)
class FeedEntry:
    guid: str
    title: str
    summary: str
    link: str
    published: datetime


def render_rss(title: str, site: str, entries: list[FeedEntry]) -> bytes:
    items = "".join(
        "<item>"
        f"<title>{escape(e.title)}</title>"
        f"<link>{escape(e.link)}</link>"
        f'<guid isPermaLink="false">{escape(e.guid)}</guid>'
        f"<pubDate>{format_datetime(e.published.astimezone(UTC), usegmt=True)}</pubDate>"
        f"<description>{escape(e.summary)}</description>"
        "</item>"
        for e in sorted(entries, key=lambda e: e.published, reverse=True)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>{escape(site)}</link>"
        f"<description>{escape(title)}</description>{items}</channel></rss>"
    ).encode()


class FeedServer:
    """Serves ``path → (title, entries)`` as RSS; ``port`` 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, tuple[str, list[FeedEntry]]] = {}
        self._hubs: dict[str, str] = {}  # path → the WebSub hub it advertises
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.render(self.path)
                with server._lock:
                    server.requests += 1
                if body is None:
                    self.send_error(404, "no such feed")
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                hub = server._hubs.get(self.path.split("?", 1)[0])
                if hub:
                    self.send_header(
                        "Link", f'<{hub}>; rel="hub", <{server.base_url}{self.path}>; rel="self"'
                    )
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="feed-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def set_feed(self, path: str, title: str, entries: list[FeedEntry]) -> None:
        with self._lock:
            self._feeds[path] = (title, list(entries))

    def advertise_hub(self, path: str, hub: str) -> None:
        """Serve ``path`` with WebSub Link headers (rel=hub, rel=self), as a publisher using ``hub``."""
        with self._lock:
            self._hubs[path] = hub

    def add_entry(self, path: str, entry: FeedEntry) -> None:
        with self._lock:
            title, entries = self._feeds[path]
            self._feeds[path] = (title, [*entries, entry])

    def render(self, path: str) -> bytes | None:
        with self._lock:
            feed = self._feeds.get(path.split("?", 1)[0])
        if feed is None:
            return None
        return render_rss(feed[0], self.base_url + "/", feed[1])

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def demo_entries(base_url: str, now: datetime) -> dict[str, tuple[str, list[FeedEntry]]]:
    """The demo items as feeds, dated relative to ``now``."""
    return {
        path: (
            title,
            [
                FeedEntry(
                    i.guid, i.title, i.summary, f"{base_url}/{i.path}", now - timedelta(minutes=i.minutes_ago)
                )
                for i in items
            ],
        )
        for path, (title, items) in FEEDS.items()
    }
