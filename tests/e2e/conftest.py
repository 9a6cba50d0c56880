from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from newswatch.demo.feed_server import FeedServer, demo_entries


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    """The demo feeds on a local server, dated now."""
    server = FeedServer().start()
    for path, (title, entries) in demo_entries(server.base_url, datetime.now(UTC)).items():
        server.set_feed(path, title, entries)
    yield server
    server.stop()
