"""A webhook receiver on 127.0.0.1: the demo prints alerts with it, tests record them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Accepts POSTed JSON and hands (headers, body) to ``on_alert``; answers ``status()``."""

    def __init__(
        self,
        on_alert: Callable[[dict[str, str], dict[str, Any]], None],
        host: str = "127.0.0.1",
        port: int = 0,
        status: Callable[[], int] = lambda: 204,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                code = status()
                if 200 <= code < 300:
                    try:
                        body = json.loads(raw)
                    except json.JSONDecodeError:
                        code = 400
                    else:
                        on_alert({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def is_alertmanager(body: dict[str, Any]) -> bool:
    """Whether ``body`` is an Alertmanager webhook notification (an operator alert)."""
    return isinstance(body.get("alerts"), list) and "receiver" in body and "groupKey" in body


def format_operator_alert(body: dict[str, Any]) -> str:
    """An Alertmanager notification (the compose stack's rules) as lines for a terminal."""
    lines = []
    for alert in body.get("alerts", []):
        labels, notes = alert.get("labels", {}), alert.get("annotations", {})
        lines.append(
            f"🚨 OPERATOR ALERT ({alert.get('status', body.get('status', '?'))}) "
            f"{labels.get('alertname', '?')} [{labels.get('severity', '?')}]: {notes.get('summary', '')}"
        )
    return "\n".join(lines)


def format_alert(body: dict[str, Any], color: bool = False) -> str:
    """An alert (or each alert of a digest) as a person reads it in a terminal: topic,
    title, source, link, why, and who else reported the story."""
    if body.get("type") == "newswatch.digest":
        alerts = body.get("alerts", [])
        head = f"📬 DIGEST: {len(alerts)} alert(s)"
        return "\n\n".join([head, *(format_alert(a, color) for a in alerts)])
    bold, dim, reset = ("\033[1m", "\033[2m", "\033[0m") if color else ("", "", "")
    item = body.get("item", {})
    topic = body.get("topic", {})
    why = body.get("why", {})
    terms = ", ".join(f"{q} → {'/'.join(words)}" for q, words in why.get("terms", {}).items())
    source = item.get("source", {})
    snippet = str(why.get("snippet", ""))
    marked, last = [], 0
    for start, end in why.get("highlights", []):  # the hits, in bold
        marked += [snippet[last:start], bold, snippet[start:end], reset]
        last = end
    marked.append(snippet[last:])
    return "\n".join(
        [
            f"{bold}🔔 ALERT [{topic.get('id')}]{reset} {dim}query: {topic.get('query')}{reset}",
            f"   {bold}{item.get('title')}{reset}",
            f"   source: {source.get('title') or source.get('host')}   published: {item.get('published') or 'unknown'}",
            f"   link:   {item.get('url')}",
            f"   why:    {terms}   (score {why.get('score', 0)})",
            f"           “{''.join(marked)}”",
            *(
                ["   also:   " + ", ".join(str(r.get("source")) for r in body["also_reported_by"])]
                if body.get("also_reported_by")
                else []
            ),
        ]
    )
