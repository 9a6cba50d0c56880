"""A webhook endpoint on 127.0.0.1 for notifier tests: records every request (headers, raw
body, the status it answered) and answers from a script of (status, headers) replies."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Hit:
    headers: dict[str, str]
    raw: bytes
    status: int

    @property
    def body(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.raw)
        return value


class HookServer:
    def __init__(self, hold: threading.Event | None = None) -> None:
        """``hold``: when given, every request waits until it is set (a hanging receiver)."""
        self.hits: list[Hit] = []
        self.arrived = 0  # requests received, answered or still held
        self.script: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.arrived += 1
                if hold is not None:
                    hold.wait(30)
                with server._lock:
                    status, headers = server.script.pop(0) if server.script else (204, {})
                    server.hits.append(Hit({k.lower(): v for k, v in self.headers.items()}, raw, status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hook-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/hook"

    def reply(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.script.extend((s, headers or {}) for s in statuses)

    def delivered(self) -> list[Hit]:
        """Requests answered with a 2xx."""
        with self._lock:
            return [h for h in self.hits if 200 <= h.status < 300]

    def all(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def start(self) -> HookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
