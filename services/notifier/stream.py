"""The live alert stream behind ``GET /alerts/stream``: ``newswatch.alerts`` fanned out to
the API's Server-Sent Events clients.

The stream reads ``newswatch.alerts`` itself (no consumer group), so a client connected
to any notifier replica sees the alerts every replica delivers. It starts from the
beginning and forwards only records stamped after it started, rather than seeking to
the end: ListOffsets LATEST is not reliable on every broker we run on. Each client has a
bounded queue; a client too slow to keep up loses the oldest events (counted in a log
line), never the notifier's memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALERTS, Alert, decode
from newswatch.shared.errors import ContractError, NewswatchError
from newswatch.shared.kafka_client import make_consumer
from newswatch.shared.kafka_io import Message
from newswatch.shared.table import TableReader

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000
#: How long after its last client left the stream still keeps alerts for a reconnect.
RESUME_WINDOW = 600.0


class StreamFull(Exception):
    """No room for another stream client (in all, or for this owner)."""

    def __init__(self, message: str, per_owner: bool) -> None:
        super().__init__(message)
        self.per_owner = per_owner


class AlertHub:
    """Hands each alert to every connected client's queue (on the client's event loop), and
    keeps the last ``RECENT`` alerts so a client that reconnects with ``Last-Event-ID`` gets
    what it missed. At most ``max_clients`` clients, ``max_per_owner`` of one owner."""

    RECENT = 1000

    def __init__(self, max_clients: int = 100, max_per_owner: int = 5) -> None:
        self._lock = threading.Lock()
        self._clients: dict[asyncio.Queue[Alert], tuple[asyncio.AbstractEventLoop, str]] = {}
        self._recent: deque[Alert] = deque(maxlen=self.RECENT)
        self.max_clients = max_clients
        self.max_per_owner = max_per_owner
        self._left_at = float("-inf")

    def subscribe(self, owner: str = "") -> asyncio.Queue[Alert]:
        queue: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            if len(self._clients) >= self.max_clients:
                raise StreamFull(f"{self.max_clients} stream clients connected, the most allowed", False)
            if sum(1 for _l, o in self._clients.values() if o == owner) >= self.max_per_owner:
                raise StreamFull(f"{owner!r} has {self.max_per_owner} streams open, the most allowed", True)
            self._clients[queue] = (asyncio.get_running_loop(), owner)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Alert]) -> None:
        with self._lock:
            self._clients.pop(queue, None)
            self._left_at = time.monotonic()

    def listening(self) -> bool:
        """Whether a client is connected, or left lately and may come back for what it missed:
        only then are alerts decoded and kept (most notifiers serve no stream at all)."""
        with self._lock:
            return bool(self._clients) or time.monotonic() - self._left_at < RESUME_WINDOW

    def since(self, alert_id: str) -> list[Alert]:
        """The kept alerts after ``alert_id`` (none if it is no longer kept)."""
        with self._lock:
            recent = list(self._recent)
        for index, alert in enumerate(recent):
            if alert.alert_id == alert_id:
                return recent[index + 1 :]
        return []

    def publish(self, alert: Alert) -> None:
        with self._lock:
            self._recent.append(alert)
            clients = list(self._clients.items())
        for queue, (loop, _owner) in clients:
            loop.call_soon_threadsafe(_offer, queue, alert)


def _offer(queue: asyncio.Queue[Alert], alert: Alert) -> None:
    if queue.full():
        queue.get_nowait()  # drop the oldest: a stalled client must not grow without bound
        log.warning("alert stream client too slow; dropped its oldest event")
    queue.put_nowait(alert)


class AlertTail(threading.Thread):
    def __init__(
        self,
        bootstrap: str,
        settings: KafkaSettings,
        hub: AlertHub,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="notifier-alert-stream", daemon=True)
        self._servers = bootstrap
        self._settings = settings
        self._hub = hub
        self._halt = stop
        self._since_ms = clock() * 1000

    def _forward(self, records: list[Message]) -> None:
        if not self._hub.listening():  # nobody to hand them to: read past them undecoded
            return
        for record in records:
            if record.timestamp < self._since_ms or record.value is None:
                continue
            try:
                self._hub.publish(decode(Alert, record.value))
            except ContractError as exc:
                log.warning(
                    "undecodable alert not streamed", extra={"offset": record.offset, "error": str(exc)}
                )

    def run(self) -> None:
        while not self._halt.is_set():
            reader = None
            try:
                reader = TableReader(
                    make_consumer(self._servers, self._settings, None, "newswatch-alert-stream"), ALERTS
                )
                reader.assign(self._halt)
                while not self._halt.is_set():
                    reader.poll(self._forward, timeout_ms=500)
            except (NewswatchError, OSError) as exc:  # the broker is away: try again shortly
                log.warning("alert stream reader failed; retrying", extra={"error": str(exc)})
                self._halt.wait(2.0)
            finally:
                if reader is not None:
                    reader.close()
