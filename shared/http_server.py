"""The per-service HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``, and mounted routes.

Plain stdlib server in a daemon thread: these endpoints must answer even when the
service's own loop is busy or stuck, and need no framework. A service may mount a few
routes of its own under a prefix (the fetcher's WebSub callbacks); their request bodies
are bounded before they are read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from newswatch.shared.errors import NewswatchError
from newswatch.shared.health import Health

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """A request to a mounted route: ``path`` is what follows the prefix, header names lowercase."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


#: A mounted route: the request in, ``(status, plain-text body)`` out.
Route = Callable[[Request], tuple[int, bytes]]


@dataclass(frozen=True)
class _Mount:
    prefix: str
    route: Route
    max_body: int


class ObservabilityServer:
    """Serves metrics and health for one service; ``port`` 0 picks a free port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        registry_ = registry
        health_ = health
        self._mounts: list[_Mount] = []
        mounts = self._mounts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if not self._mounted("POST"):
                    self._send(405, b"method not allowed\n", "text/plain")

            def _mounted(self, method: str) -> bool:
                path, _, query = self.path.partition("?")
                mount = next((m for m in list(mounts) if path.startswith(m.prefix)), None)
                if mount is None:
                    return False
                body = b""
                if method == "POST":
                    length = self.headers.get("Content-Length", "")
                    if not length.isdigit():
                        self.close_connection = True
                        self._send(411, b"Content-Length required\n", "text/plain")
                        return True
                    if int(length) > mount.max_body:
                        self.close_connection = True
                        self._send(413, f"body over {mount.max_body} bytes\n".encode(), "text/plain")
                        return True
                    body = self.rfile.read(int(length))
                request = Request(
                    method,
                    path[len(mount.prefix) :],
                    dict(parse_qsl(query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                try:
                    status, reply = mount.route(request)
                except Exception:
                    log.exception("mounted route failed", extra={"prefix": mount.prefix})
                    status, reply = 500, b"internal error\n"
                self._send(status, reply, "text/plain; charset=utf-8")
                return True

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if self._mounted("GET"):
                    return
                if path == "/metrics":
                    self._send(200, generate_latest(registry_), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok, why = health_.alive()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
                elif path == "/readyz":
                    ok, why = health_.ready()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http %s", format % args)

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise NewswatchError(f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def mount(self, prefix: str, route: Route, max_body: int) -> None:
        """Serve GET and POST under ``prefix`` with ``route``; POST bodies over ``max_body`` get a 413."""
        self._mounts.append(_Mount(prefix, route, max_body))

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
