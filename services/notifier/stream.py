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
from collections.abc import Callable

from newswatch.shared.config import KafkaSettings
from newswatch.shared.contract import ALERTS, Alert, decode
from newswatch.shared.errors import ContractError, NewswatchError
from newswatch.shared.kafka_client import make_consumer
from newswatch.shared.kafka_io import Message
from newswatch.shared.table import TableReader

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000


class AlertHub:
    """Hands each alert to every connected client's queue (on the client's event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[asyncio.Queue[Alert], asyncio.AbstractEventLoop] = {}

    def subscribe(self) -> asyncio.Queue[Alert]:
        queue: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            self._clients[queue] = asyncio.get_running_loop()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Alert]) -> None:
        with self._lock:
            self._clients.pop(queue, None)

    def listening(self) -> bool:
        """Whether any client is connected (the stream decodes alerts only then)."""
        with self._lock:
            return bool(self._clients)

    def publish(self, alert: Alert) -> None:
        with self._lock:
            clients = list(self._clients.items())
        for queue, loop in clients:
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
