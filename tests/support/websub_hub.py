"""A WebSub hub on 127.0.0.1 that follows the spec (https://www.w3.org/TR/websub/), for tests.

It accepts subscription requests (202), verifies intent by calling the subscriber back with
a random challenge, and distributes content signed with the subscriber's ``hub.secret``.
Switches make it misbehave as the spec's failure cases need: deny a subscription, refuse
requests with a status, sign with the wrong secret, grant a short lease.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx


@dataclass
class HubSubscription:
    callback: str
    topic: str
    secret: str
    expires: float


@dataclass
class SpecHub:
    lease: int = 3600  # granted lease seconds (whatever the subscriber asked)
    deny: bool = False  # answer subscriptions with hub.mode=denied
    refuse: int | None = None  # answer requests with this status instead of 202
    sign_with: str | None = None  # sign with this secret instead of the subscriber's
    verify_intent: bool = True  # False: accept requests (202) but never call back
    endless: bool = False  # answer requests with a 503 whose body never ends (for a minute)
    subscriptions: dict[tuple[str, str], HubSubscription] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    verifications: list[tuple[str, int, bool]] = field(default_factory=list)  # mode, status, echoed

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                if hub.endless:
                    self._endless()
                    return
                status = hub._request(form)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _endless(self) -> None:
                self.send_response(503)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"busy " * 200
                deadline = time.monotonic() + 60
                try:
                    while time.monotonic() < deadline:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        time.sleep(0.01)
                except OSError:
                    return  # the subscriber stopped reading, as it should

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="test-hub", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _request(self, form: dict[str, str]) -> int:
        with self._lock:
            self.requests.append(form)
        mode = form.get("hub.mode")
        if (
            mode not in ("subscribe", "unsubscribe")
            or not form.get("hub.callback")
            or not form.get("hub.topic")
        ):
            return 400
        if self.refuse is not None:
            return self.refuse
        # Verification happens after the 202, as a real hub does it: asynchronously.
        if not self.verify_intent:
            return 202
        threading.Thread(target=self._verify, args=(form,), daemon=True).start()
        return 202

    def _verify(self, form: dict[str, str]) -> None:
        time.sleep(0.05)
        callback, topic, mode = form["hub.callback"], form["hub.topic"], form["hub.mode"]
        if self.deny and mode == "subscribe":
            params = {"hub.mode": "denied", "hub.topic": topic, "hub.reason": "not on this hub"}
            status = httpx.get(callback, params=params, timeout=5).status_code
            with self._lock:
                self.verifications.append(("denied", status, False))
            return
        self.verify(callback, topic, mode, form.get("hub.secret", ""))

    def verify(self, callback: str, topic: str, mode: str, secret: str = "") -> bool:
        """Call the subscriber back with a challenge; record the subscription if it echoed it."""
        challenge = secrets.token_urlsafe(16)
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(self.lease)
        response = httpx.get(callback, params=params, timeout=5)
        echoed = response.status_code // 100 == 2 and response.text == challenge
        with self._lock:
            self.verifications.append((mode, response.status_code, echoed))
            if echoed and mode == "subscribe":
                self.subscriptions[(callback, topic)] = HubSubscription(
                    callback, topic, secret, time.time() + self.lease
                )
            elif echoed:
                self.subscriptions.pop((callback, topic), None)
        return echoed

    def subscribers(self, topic: str) -> list[HubSubscription]:
        with self._lock:
            return [s for s in self.subscriptions.values() if s.topic == topic and s.expires > time.time()]

    def publish(self, topic: str, body: bytes, content_type: str = "application/rss+xml") -> list[int]:
        """Distribute ``body`` to every subscriber of ``topic``; returns their statuses."""
        statuses = []
        for sub in self.subscribers(topic):
            secret = self.sign_with if self.sign_with is not None else sub.secret
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": content_type,
                "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"',
                "X-Hub-Signature": f"sha256={signature}",
            }
            statuses.append(httpx.post(sub.callback, content=body, headers=headers, timeout=30).status_code)
        return statuses
