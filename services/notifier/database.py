"""The notifier's database, opened once: migrated, then split by caller into the catalog
(topics and subscriptions: the API, the config), the tokens (the API's authentication, the
CLI), the outbox (routing, sending, the delivery log), the topics' activity (intake, the web
app) and the web app's access (sessions, mailed links, feed and unsubscribe URLs). SQLite when embedded, PostgreSQL
when replicas share it (``database_url``); both pass the same tests.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from newswatch.notifier.access import Capabilities, Links, Sessions
from newswatch.notifier.activity import Activity
from newswatch.notifier.catalog import Catalog
from newswatch.notifier.outbox import Outbox
from newswatch.notifier.schema import COMPONENT, MIGRATIONS
from newswatch.notifier.tokens import Tokens
from newswatch.shared.clock import SYSTEM, Clock
from newswatch.shared.config import Config
from newswatch.shared.db import database_url, make_engine, migrate


class NotifierDb:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        migrate(engine, COMPONENT, MIGRATIONS)
        self._engine = engine
        self.catalog = Catalog(engine, clock)
        self.tokens = Tokens(engine, clock)
        self.outbox = Outbox(engine, clock)
        self.activity = Activity(engine, clock)
        self.sessions = Sessions(engine, clock)
        self.links = Links(engine, clock)
        self.capabilities = Capabilities(engine, clock)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()


def open_db(config: Config) -> NotifierDb:
    """The configured database (``database_url``, else SQLite in ``state_dir``), migrated."""
    return NotifierDb(make_engine(database_url(config.database_url, config.state_dir, "notifier")))
