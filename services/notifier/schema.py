"""The notifier's database schema, declared once: the tables as SQLAlchemy ``Table`` objects
(which the queries use) and the numbered migration steps that create them (which
``shared.db.migrate`` applies once each, in order, under a lock). A test applies the
migrations to a fresh SQLite and PostgreSQL database and compares what they made with the
tables here, column by column, so the two cannot drift apart.

Tables (``nw_`` prefix):

- ``nw_topics``, ``nw_subscriptions``, ``nw_tokens``: what the API manages (``catalog``,
  ``tokens``); the database is their source of truth. A deleted topic or subscription keeps a
  tombstone (``deleted_at``): ids are unique forever.
- ``nw_stories``: every (subscription, item) the router has handled, with the item's
  SimHash: the dedup index (``outbox.Routing``).
- ``nw_deliveries``: the outbox *and* the delivery log (``outbox``).
- ``nw_digest_entries``: matches waiting for a digest.
- ``nw_sessions``, ``nw_links``, ``nw_capabilities``: the web app's sign-ins, mailed
  single-use links, and per-subscription feed and unsubscribe URLs (``access``).
- ``nw_topic_hours``: matches per topic and hour (``activity``).

Times are epoch seconds (portable across both databases).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, String, Table, Text

COMPONENT = "notifier"
MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE nw_topics (id VARCHAR(64) PRIMARY KEY, owner VARCHAR(64) NOT NULL, "
        "query TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE nw_subscriptions (id VARCHAR(64) PRIMARY KEY, owner VARCHAR(64) NOT NULL, "
        "spec TEXT NOT NULL, secret VARCHAR(128) NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX nw_subscriptions_by_owner ON nw_subscriptions (owner)",
        "CREATE TABLE nw_tokens (token_hash VARCHAR(64) PRIMARY KEY, owner VARCHAR(64) NOT NULL, "
        "name VARCHAR(128) NOT NULL, created_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE nw_stories (subscription_id VARCHAR(64) NOT NULL, item_id VARCHAR(128) NOT NULL, "
        "story_item_id VARCHAR(128) NOT NULL, revision INTEGER NOT NULL, fingerprint BIGINT NOT NULL, "
        "title TEXT NOT NULL, url TEXT NOT NULL, source TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL, "
        "PRIMARY KEY (subscription_id, item_id))",
        "CREATE INDEX nw_stories_recent ON nw_stories (subscription_id, seen_at)",
        "CREATE INDEX nw_stories_by_story ON nw_stories (subscription_id, story_item_id)",
        "CREATE TABLE nw_deliveries (alert_id VARCHAR(64) PRIMARY KEY, subscription_id VARCHAR(64) NOT NULL, "
        "kind VARCHAR(16) NOT NULL, topic_id VARCHAR(64), item_id VARCHAR(128), channel VARCHAR(16) NOT NULL, "
        "status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, next_attempt_at DOUBLE PRECISION NOT NULL, "
        "created_at DOUBLE PRECISION NOT NULL, published_at DOUBLE PRECISION, "
        "delivered_at DOUBLE PRECISION, failure VARCHAR(32), last_error TEXT, payload TEXT NOT NULL)",
        "CREATE INDEX nw_deliveries_due ON nw_deliveries (status, next_attempt_at)",
        "CREATE INDEX nw_deliveries_by_subscription ON nw_deliveries (subscription_id, created_at)",
        "CREATE TABLE nw_digest_entries (subscription_id VARCHAR(64) NOT NULL, item_id VARCHAR(128) NOT NULL, "
        "revision INTEGER NOT NULL, queued_at DOUBLE PRECISION NOT NULL, due_at DOUBLE PRECISION NOT NULL, "
        "payload TEXT NOT NULL, digest_id VARCHAR(64), PRIMARY KEY (subscription_id, item_id, revision))",
        "CREATE INDEX nw_digest_entries_due ON nw_digest_entries (digest_id, due_at)",
    ],
    ["ALTER TABLE nw_deliveries ADD COLUMN traceparent VARCHAR(55)"],
    [
        "ALTER TABLE nw_deliveries ADD COLUMN destination VARCHAR(255) NOT NULL DEFAULT ''",
        "CREATE INDEX nw_deliveries_pending_by_destination ON nw_deliveries (destination, status)",
    ],
    [
        # Ids are unique forever: a deleted topic or subscription leaves a tombstone, so its
        # id can never be taken by another owner (who would then see the first one's log).
        "ALTER TABLE nw_topics ADD COLUMN deleted_at DOUBLE PRECISION",
        "ALTER TABLE nw_subscriptions ADD COLUMN deleted_at DOUBLE PRECISION",
        # Tokens get an id to list and revoke them by, a role, an expiry and a last use.
        # Tokens made before roles existed could do everything: they stay admin.
        "ALTER TABLE nw_tokens ADD COLUMN token_id VARCHAR(16) NOT NULL DEFAULT ''",
        "UPDATE nw_tokens SET token_id = substr(token_hash, 1, 12)",
        "CREATE UNIQUE INDEX nw_tokens_by_id ON nw_tokens (token_id)",
        "ALTER TABLE nw_tokens ADD COLUMN role VARCHAR(16) NOT NULL DEFAULT 'admin'",
        "ALTER TABLE nw_tokens ADD COLUMN expires_at DOUBLE PRECISION",
        "ALTER TABLE nw_tokens ADD COLUMN last_used_at DOUBLE PRECISION",
        "ALTER TABLE nw_tokens ADD COLUMN revoked_at DOUBLE PRECISION",
    ],
    [
        # The web app: a subscription may be paused, or pending until its email address
        # confirms it (double opt-in); a token may name its holder's address (magic links).
        "ALTER TABLE nw_subscriptions ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active'",
        "ALTER TABLE nw_tokens ADD COLUMN email VARCHAR(254)",
        "CREATE TABLE nw_sessions (session_hash VARCHAR(64) PRIMARY KEY, token_id VARCHAR(16) NOT NULL, "
        "csrf VARCHAR(64) NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
        "expires_at DOUBLE PRECISION NOT NULL, last_seen_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX nw_sessions_by_token ON nw_sessions (token_id)",
        "CREATE TABLE nw_links (link_hash VARCHAR(64) PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
        "subject VARCHAR(64) NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
        "expires_at DOUBLE PRECISION NOT NULL, used_at DOUBLE PRECISION)",
        "CREATE INDEX nw_links_by_subject ON nw_links (kind, subject, created_at)",
        "CREATE TABLE nw_capabilities (token VARCHAR(64) PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
        "subscription_id VARCHAR(64) NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
        "revoked_at DOUBLE PRECISION)",
        "CREATE INDEX nw_capabilities_by_subscription ON nw_capabilities (subscription_id, kind)",
        "CREATE TABLE nw_topic_hours (topic_id VARCHAR(64) NOT NULL, hour INTEGER NOT NULL, "
        "matches INTEGER NOT NULL, last_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (topic_id, hour))",
    ],
]

METADATA = MetaData()
_meta = METADATA
TOPICS = Table(
    "nw_topics",
    _meta,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("query", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float),
)
SUBSCRIPTIONS = Table(
    "nw_subscriptions",
    _meta,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float),
    Column("status", String(16), nullable=False),
)
TOKENS = Table(
    "nw_tokens",
    _meta,
    Column("token_hash", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("token_id", String(16), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("expires_at", Float),
    Column("last_used_at", Float),
    Column("revoked_at", Float),
    Column("email", String(254)),
)
STORIES = Table(
    "nw_stories",
    _meta,
    Column("subscription_id", String(64), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("story_item_id", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("fingerprint", BigInteger, nullable=False),
    Column("title", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("seen_at", Float, nullable=False),
)
DELIVERIES = Table(
    "nw_deliveries",
    _meta,
    Column("alert_id", String(64), primary_key=True),
    Column("subscription_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("topic_id", String(64)),
    Column("item_id", String(128)),
    Column("channel", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float),
    Column("delivered_at", Float),
    Column("failure", String(32)),
    Column("last_error", Text),
    Column("payload", Text, nullable=False),
    Column("traceparent", String(55)),
    Column("destination", String(255), nullable=False),
)
DIGEST_ENTRIES = Table(
    "nw_digest_entries",
    _meta,
    Column("subscription_id", String(64), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("queued_at", Float, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Column("digest_id", String(64)),
)
#: Web app sign-ins: the cookie's SHA-256, the token it acts as, the CSRF secret of its forms.
SESSIONS = Table(
    "nw_sessions",
    _meta,
    Column("session_hash", String(64), primary_key=True),
    Column("token_id", String(16), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)
#: Single-use links mailed to a person (sign in, confirm a subscription): stored hashed.
LINKS = Table(
    "nw_links",
    _meta,
    Column("link_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float),
)
#: Capability URLs a subscription hands out and shows again (its alert feeds, the unsubscribe
#: link in its emails): stored as they are, revocable, never the account's token.
CAPABILITIES = Table(
    "nw_capabilities",
    _meta,
    Column("token", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subscription_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)
#: Matches per topic and hour (the web app's "24 h" and "last match").
TOPIC_HOURS = Table(
    "nw_topic_hours",
    _meta,
    Column("topic_id", String(64), primary_key=True),
    Column("hour", Integer, primary_key=True),
    Column("matches", Integer, nullable=False),
    Column("last_at", Float, nullable=False),
)
