"""Fixtures that start real components: the Kafka-protocol broker on a free port."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from newswatch.shared.broker import EmbeddedBroker
from newswatch.shared.config import KafkaSettings
from newswatch.shared.processes import free_port
from tests.support.aio import Aio

#: Tansu's group join takes about session_timeout/2: keep it short in tests.
TEST_KAFKA = KafkaSettings(session_timeout_ms=6000, heartbeat_interval_ms=1000, send_timeout=10.0)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh, empty broker per test (Tansu starts in milliseconds and keeps nothing)."""
    instance = EmbeddedBroker(free_port())
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def aio() -> Iterator[Aio]:
    """An event loop for the test's coroutines (see Aio)."""
    runner = Aio()
    yield runner
    runner.close()


@pytest.fixture
def kafka_settings() -> KafkaSettings:
    return TEST_KAFKA


POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL, dropped afterwards (fails under CI if unreachable)."""
    admin = create_engine(POSTGRES_ADMIN_URL)
    schema = f"nw_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """The same store tests run on SQLite and on PostgreSQL (a fresh schema per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.sqlite3"
    else:
        yield request.getfixturevalue("postgres_url")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault-injection scenarios' alert counts (tests/chaos), one line per scenario run,
    and the figures tests measured on the way (tests/support/measured)."""
    from tests.support.chaos import report_lines
    from tests.support.measured import MEASURED

    if MEASURED:
        terminalreporter.section("measurements")
        for line in MEASURED:
            terminalreporter.write_line(line)

    lines = report_lines()
    if lines:
        terminalreporter.section("chaos scenarios: alerts")
        for line in lines:
            terminalreporter.write_line(line)
