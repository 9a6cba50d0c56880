"""The WebSub subscriber: asks hubs for push, answers their callbacks, keeps leases alive.

State lives in memory (authoritative while running) and is written through to the
fetcher's database by one writer thread, in the order of the changes, so a restart keeps
every callback id, secret and lease. Methods called on the event loop never block: they
change state under the lock and start request tasks. Callback handlers run in the HTTP
server's threads and hand pushed content to the event loop (``deliver``), which processes
it exactly like a polled body.

Spec: https://www.w3.org/TR/websub/ (sections 5.1 to 5.3 and 7).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

from newswatch.fetcher.feed_table import owns
from newswatch.fetcher.metrics import FetcherMetrics
from newswatch.fetcher.websub import (
    MAX_CHALLENGE,
    Hub,
    callback_url,
    check_signature,
    new_callback_id,
    new_secret,
    renew_at,
    retry_delay,
)
from newswatch.fetcher.websub_store import Subscription, WebSubStore
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.config import WebSubSettings
from newswatch.shared.errors import NewswatchError
from newswatch.shared.http_server import Request

log = logging.getLogger(__name__)

#: ``deliver(feed_url, body, headers)``: process pushed content; True when it was processed
#: (published and remembered, or nothing new), False when the feed is not polled here,
#: raises when processing failed (the hub is told to retry).
Deliver = Callable[[str, bytes, Mapping[str, str]], bool]

#: Requests to hubs in flight at once (renewals of many feeds fall due together).
CONCURRENT_REQUESTS = 8
#: The longest a request to a hub may take, answer included (a slow hub holds one of the slots).
REQUEST_TIMEOUT = 30.0
#: A push is answered once processed; beyond this the hub is told to retry.
PUSH_TIMEOUT = 60.0


class PushFailed(NewswatchError):
    """Pushed content could not be processed (the hub gets a 503 and retries)."""


class Subscriber:
    def __init__(
        self,
        store: WebSubStore,
        client: httpx.AsyncClient,
        settings: WebSubSettings,
        replica: int,
        metrics: FetcherMetrics,
        replicas: int = 1,
        clock: Clock = SYSTEM,
    ) -> None:
        if settings.public_url is None:
            raise ValueError("WebSub needs fetcher.websub.public_url")
        self._store = store
        self._client = client
        self._settings = settings
        self._public_url = settings.public_url
        self._replica = replica
        self._replicas = replicas
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._subs: dict[str, Subscription] = {}
        self._by_callback: dict[str, str] = {}
        self._inflight: set[str] = set()  # feeds with a request being sent
        self._states: Counter[str] = Counter()  # subscriptions per state (the gauge)
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="websub-store")
        self._slots = asyncio.Semaphore(CONCURRENT_REQUESTS)
        self._deliver: Deliver | None = None

    # -- life cycle (event loop) ---------------------------------------------------------

    def load(self, deliver: Deliver) -> None:
        """Read the stored subscriptions; pushes go to ``deliver`` from now on."""
        # A shared database holds every replica's rows: this one keeps (and renews) its own only.
        rows = [sub for sub in self._store.load() if owns(sub.feed_url, self._replica, self._replicas)]
        with self._lock:
            for sub in rows:
                self._subs[sub.feed_url] = sub
                self._by_callback[sub.callback_id] = sub.feed_url
                self._count(None, sub.state)
            self._deliver = deliver
        log.info("WebSub subscriptions loaded", extra={"subscriptions": len(rows)})

    async def close(self, grace: float) -> None:
        """Let requests in flight finish (within ``grace``), then the last writes."""
        if self._tasks:
            _done, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in late:  # the request stays pending; tick() retries it after a restart
                task.cancel()
        with self._lock:
            self._deliver = None
        self._writer.shutdown(wait=True)

    def live(self, feed_url: str) -> bool:
        """Push is verified and its lease current: polling can slow down to the safety net."""
        with self._lock:
            sub = self._subs.get(feed_url)
        return (
            sub is not None
            and sub.state == "verified"
            and sub.expires_at is not None
            and sub.expires_at > self._clock.time()
        )

    def consider(self, feed_url: str, hub: Hub | None) -> None:
        """After a full poll: subscribe if the feed advertises a hub we are not subscribed to."""
        if hub is None:
            return
        with self._lock:
            sub = self._subs.get(feed_url)
            if (
                sub is not None
                and (sub.hub, sub.topic) == (hub.hub, hub.topic)
                and sub.state != "unsubscribing"
            ):
                return  # known: renewals and retries are tick()'s
            if sub is not None:
                self._by_callback.pop(sub.callback_id, None)
            sub = Subscription(feed_url, hub.hub, hub.topic, new_callback_id(), new_secret(), "pending")
            self._change(sub)
            self._start(sub, "subscribe")
        log.info("feed advertises a WebSub hub; subscribing", extra={"feed": feed_url, "hub": hub.hub})

    def poll_found_new(self, feed_url: str) -> None:
        """A safety-net poll published items push did not bring: the hub is silent for us."""
        with self._lock:
            sub = self._subs.get(feed_url)
            if sub is None or sub.state != "verified":
                return
            self._change(dataclasses.replace(sub, state="silent"))
        log.warning("a poll found items WebSub did not push; polling normally", extra={"feed": feed_url})

    def forget(self, feed_url: str) -> None:
        """The feed is no longer polled here: unsubscribe (verified or pending), else drop the row."""
        with self._lock:
            sub = self._subs.get(feed_url)
            if sub is None:
                return
            if sub.state in ("verified", "silent", "pending"):
                self._start(self._change(dataclasses.replace(sub, state="unsubscribing")), "unsubscribe")
            else:
                self._remove(sub)

    def keep_only(self, feeds: Collection[str]) -> None:
        """At start: unsubscribe from feeds no longer polled here (removed while we were down)."""
        with self._lock:
            stale = [url for url in self._subs if url not in feeds]
        for url in stale:
            self.forget(url)

    def tick(self) -> None:
        """Once a second: time out unverified requests, expire leases, renew, retry."""
        now = self._clock.time()
        with self._lock:
            for sub in list(self._subs.values()):
                if sub.feed_url in self._inflight:
                    continue
                if sub.request and now - (sub.requested_at or now) > self._settings.verify_timeout:
                    self._unverified(sub)
                elif sub.state in ("verified", "silent") and sub.expires_at is not None:
                    if now >= sub.expires_at:
                        log.warning("WebSub lease ended unrenewed", extra={"feed": sub.feed_url})
                        self._start(self._change(dataclasses.replace(sub, state="expired")), "subscribe")
                    elif (
                        sub.request is None
                        and now >= renew_at(sub.expires_at, sub.lease or 0.0, self._settings.renew_before)
                        and (sub.next_attempt or 0.0) <= now
                    ):
                        self._start(sub, "subscribe")
                elif (
                    sub.state in ("failed", "denied", "expired")
                    and sub.request is None
                    and (sub.next_attempt or 0.0) <= now
                ):
                    self._start(sub, "subscribe")

    def _unverified(self, sub: Subscription) -> None:
        """A request the hub never verified: unsubscribing ends here; subscribing is retried."""
        if sub.request == "unsubscribe":
            self._remove(sub)
            return
        self._failed(sub, "the hub did not verify the request in time")

    def _failed(self, sub: Subscription, error: str) -> None:
        """A subscribe request that came to nothing: push stays live until its lease ends (a
        renewal), else the subscription is failed; either way it is tried again after a backoff."""
        failures = sub.failures + 1
        self._change(
            dataclasses.replace(
                sub,
                state=sub.state if sub.state in ("verified", "silent") else "failed",
                request=None,
                failures=failures,
                next_attempt=self._clock.time() + retry_delay(failures, self._settings.retry),
                last_error=error,
            )
        )

    # -- requests to hubs (event loop) ---------------------------------------------------

    def _start(self, sub: Subscription, mode: str) -> None:
        """Mark the request pending (before sending: the hub may verify before it answers) and send it."""
        state = sub.state if sub.state in ("verified", "silent", "unsubscribing") else "pending"
        sub = self._change(
            dataclasses.replace(sub, state=state, request=mode, requested_at=self._clock.time())
        )
        self._inflight.add(sub.feed_url)
        self._spawn(self._send(sub, mode))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, sub: Subscription, mode: str) -> None:
        form = {
            "hub.callback": callback_url(self._public_url, self._replica, sub.callback_id),
            "hub.mode": mode,
            "hub.topic": sub.topic,
        }
        if mode == "subscribe":
            form["hub.lease_seconds"] = str(int(self._settings.lease))
            form["hub.secret"] = sub.secret
        error = None
        try:
            async with self._slots, asyncio.timeout(REQUEST_TIMEOUT):
                status, head = await self._post(sub.hub, form)
            if 200 <= status < 300:
                outcome = "accepted"
            else:
                outcome = "refused"
                error = f"HTTP {status} from the hub: {head.decode(errors='replace')!r}"
        except TimeoutError:
            outcome = "error"
            error = f"no answer within {REQUEST_TIMEOUT:.0f} s"
        except (httpx.HTTPError, NewswatchError) as exc:  # the egress policy's refusal included
            outcome = "error"
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._inflight.discard(sub.feed_url)
        self._metrics.websub_requests.labels(mode, outcome).inc()
        if error is None:
            log.info("WebSub request accepted", extra={"feed": sub.feed_url, "mode": mode, "hub": sub.hub})
            return
        log.warning(
            "WebSub request failed",
            extra={"feed": sub.feed_url, "mode": mode, "hub": sub.hub, "error": error},
        )
        with self._lock:
            current = self._subs.get(sub.feed_url)
            if current is None or current.callback_id != sub.callback_id or current.request != mode:
                return  # verified, denied or replaced meanwhile
            if mode == "unsubscribe":
                self._remove(current)  # the lease lapses; pushes meanwhile get 410
                return
            self._failed(current, error)

    async def _post(self, hub: str, form: dict[str, str]) -> tuple[int, bytes]:
        """POST to a hub (any address a feed names): its status and at most the first 200 bytes
        of its answer, so a hostile hub cannot make us read an endless body."""
        async with self._client.stream("POST", hub, data=form) as response:
            head = b""
            async for chunk in response.aiter_bytes():
                head += chunk
                if len(head) >= 200:
                    break
            return response.status_code, head[:200]

    # -- callbacks from hubs (HTTP server threads) ---------------------------------------

    def route(self, request: Request) -> tuple[int, bytes]:
        """``/websub/<callback id>``: GET verifies intent, POST delivers content."""
        if request.method == "GET":
            return self.on_verify(request.path, request.query)
        return self.on_push(request.path, request.headers, request.body)

    def on_verify(self, callback_id: str, query: Mapping[str, str]) -> tuple[int, bytes]:
        """A hub's GET: verification of intent (subscribe, unsubscribe) or a denial."""
        mode = query.get("hub.mode", "")
        topic = query.get("hub.topic", "")
        challenge = query.get("hub.challenge", "")
        with self._lock:
            feed = self._by_callback.get(callback_id)
            sub = self._subs.get(feed) if feed else None
            answer = self._verify(sub, mode, topic, challenge, query) if sub and sub.topic == topic else None
        label = mode if mode in ("subscribe", "unsubscribe", "denied") else "subscribe"
        self._metrics.websub_verifications.labels(label, "refused" if answer is None else "confirmed").inc()
        if answer is None:
            log.info("WebSub verification refused: no such request pending", extra={"mode": mode[:20]})
            return 404, b"no such request pending\n"
        log.info("WebSub verification confirmed", extra={"feed": feed, "mode": mode})
        return 200, answer

    def _verify(
        self, sub: Subscription, mode: str, topic: str, challenge: str, query: Mapping[str, str]
    ) -> bytes | None:
        """The body to answer with, or None to refuse (404). Called with the lock held."""
        now = self._clock.time()
        if mode == "denied":
            if sub.state == "unsubscribing":
                return None
            failures = sub.failures + 1
            self._change(
                dataclasses.replace(
                    sub,
                    state="denied",
                    request=None,
                    failures=failures,
                    next_attempt=now + retry_delay(failures, self._settings.retry),
                    last_error=f"denied by the hub: {query.get('hub.reason', '')[:200]}",
                )
            )
            return b""
        if sub.request != mode or not 0 < len(challenge) <= MAX_CHALLENGE:
            return None
        if mode == "unsubscribe":
            self._remove(sub)
            return challenge.encode()
        lease = query.get("hub.lease_seconds", "")
        if not lease.isdigit() or int(lease) <= 0:
            return None  # the spec makes the lease required when subscribing
        self._change(
            dataclasses.replace(
                sub,
                state="verified",
                request=None,
                expires_at=now + int(lease),
                lease=float(lease),
                failures=0,
                next_attempt=None,
                last_error=None,
            )
        )
        return challenge.encode()

    def on_push(self, callback_id: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """A hub's POST: new content. Checked against our secret, then processed as a poll's body."""
        with self._lock:
            feed = self._by_callback.get(callback_id)
            sub = self._subs.get(feed) if feed else None
            deliver = self._deliver
        if sub is None or deliver is None:
            self._metrics.websub_pushes.labels("unknown").inc()
            return 410, b"no such subscription\n"
        problem = check_signature(headers.get("x-hub-signature"), sub.secret, body)
        if problem is not None:
            # The spec: ignore it, and the subscriber may still answer 2xx (no oracle for forgers).
            self._metrics.websub_pushes.labels(problem).inc()
            log.warning("WebSub push ignored", extra={"feed": sub.feed_url, "reason": problem})
            return 202, b"ignored\n"
        try:
            processed = deliver(sub.feed_url, body, headers)
        except Exception as exc:  # noqa: BLE001 - any failure: the hub retries, the safety-net poll too
            self._metrics.websub_pushes.labels("failed").inc()
            log.error("WebSub push not processed", extra={"feed": sub.feed_url, "error": str(exc)})
            return 503, b"not processed; retry later\n"
        if not processed:
            self._metrics.websub_pushes.labels("unknown").inc()
            return 410, b"this feed is no longer followed\n"
        self._metrics.websub_pushes.labels("processed").inc()
        with self._lock:
            current = self._subs.get(sub.feed_url)
            if current is not None and current.callback_id == sub.callback_id:
                now = self._clock.time()
                state = "verified" if current.state == "silent" else current.state
                self._change(dataclasses.replace(current, state=state, pushed_at=now))
        return 204, b""

    # -- state (lock held) ---------------------------------------------------------------

    def _change(self, sub: Subscription) -> Subscription:
        old = self._subs.get(sub.feed_url)
        self._subs[sub.feed_url] = sub
        self._by_callback[sub.callback_id] = sub.feed_url
        self._write(self._store.save, sub)
        self._count(old.state if old else None, sub.state)
        return sub

    def _remove(self, sub: Subscription) -> None:
        old = self._subs.pop(sub.feed_url, None)
        self._by_callback.pop(sub.callback_id, None)
        self._write(self._store.delete, sub.feed_url)
        self._count(old.state if old else None, None)

    def _write(self, func: Callable[[Any], None], arg: Any) -> None:
        """Queue a write: one thread, so the database sees the changes in their order."""
        try:
            future: Future[None] = self._writer.submit(func, arg)
        except RuntimeError:  # closed: a hub's callback raced the shutdown; the hub will retry
            log.warning("WebSub change not stored: the fetcher is stopping")
            return
        future.add_done_callback(_log_write_error)

    def _count(self, was: str | None, now: str | None) -> None:
        """Move one subscription between states in the gauge (no pass over every row)."""
        for state, step in ((was, -1), (now, 1)):
            if state is not None:
                self._states[state] += step
                self._metrics.websub_subscriptions.labels(state).set(self._states[state])


def _log_write_error(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("could not store a WebSub subscription change", extra={"error": str(exc)})
