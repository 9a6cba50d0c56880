"""The notifier API as an attacker meets it: a real uvicorn server on 127.0.0.1 over a real
SQLite database, with an admin and a subscriber token. Kafka is the in-memory backend (these
tests are about what the API lets in, not about the broker)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from newswatch.matcher.aliases import AliasTable
from newswatch.matcher.topics import Compiler
from newswatch.notifier.api import ApiContext
from newswatch.notifier.database import NotifierDb
from newswatch.notifier.intake import Routes
from newswatch.notifier.site import ApiServer, make_app
from newswatch.notifier.stream import AlertHub
from newswatch.shared.config import Config, KafkaSettings, NotifierSettings
from newswatch.shared.contract import ALL_TOPICS
from newswatch.shared.db import make_engine
from newswatch.shared.kafka_io import Publisher
from newswatch.shared.kafka_memory import MemoryBroker, producer_factory
from newswatch.shared.metrics import PipelineMetrics


@dataclass
class Api:
    url: str
    db: NotifierDb
    kafka: MemoryBroker
    admin: dict[str, str]
    subscriber: dict[str, str]
    hub: AlertHub

    def call(self, method: str, path: str, who: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=who or {}, timeout=30, **kw)

    def token(self, owner: str, role: str = "subscriber") -> dict[str, str]:
        token, _info = self.db.tokens.create(owner, "test", role)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}


def make_api(tmp_path: Path, notifier: NotifierSettings | None = None) -> tuple[Api, ApiServer]:
    kafka = MemoryBroker()
    kafka.ensure_topics(ALL_TOPICS)
    publisher = Publisher(
        producer_factory(kafka, ALL_TOPICS), PipelineMetrics(CollectorRegistry(), "t", "0"), send_timeout=5
    )
    db = NotifierDb(make_engine(f"sqlite:///{tmp_path}/notifier.sqlite3"))
    config = Config(
        kafka=KafkaSettings(bootstrap="127.0.0.1:9"),  # never reached by these tests
        notifier=notifier or NotifierSettings(),
    )
    hub = AlertHub(config.notifier.stream_clients, config.notifier.stream_clients_per_owner)
    context = ApiContext(
        db,
        publisher,
        Routes(db.catalog),
        config,
        hub,
        compiler_factory=lambda: Compiler(AliasTable(), ("en",)),
    )
    server = ApiServer(make_app(context), "127.0.0.1", 0)
    server.start()
    api = Api(f"http://127.0.0.1:{server.bound_port}", db, kafka, {}, {}, hub)
    api.admin = api.token("root", "admin")
    api.subscriber = api.token("sam", "subscriber")
    return api, server


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    made, server = make_api(tmp_path)
    yield made
    server.stop()
    made.db.close()
