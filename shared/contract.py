"""The Kafka contract between the services: topic names, keys and versioned JSON payloads.

Every payload carries ``v`` (the major schema version). Readers accept their own major
version and ignore fields they do not know, so a producer may add fields without a
coordinated upgrade; a new major version is a breaking change and goes to the DLQ of a
reader that does not know it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from newswatch.shared.errors import ContractError

ITEMS = "newswatch.items"
"""Normalized feed items. Key: item_id. Producer: fetcher. Consumer: matcher."""
MATCHES = "newswatch.matches"
"""An item matched a watch topic. Key: topic_id. Producer: matcher. Consumer: notifier."""
TOPICS = "newswatch.topics"
"""Watch topic definitions (value = TopicDefinition) or deletions (tombstone). Key: topic_id."""
ALERTS = "newswatch.alerts"
"""Every alert delivered to a subscriber. Key: subscription_id. Producer: notifier."""
DLQ = "newswatch.dlq"
"""Poison messages, with the error in headers. Key: the original key."""
FEEDS = "newswatch.feeds"
"""Feeds added, changed, paused or removed at runtime (value = FeedDefinition). Key: feed URL."""
FEED_HEALTH = "newswatch.feed-health"
"""A feed changed health (unhealthy, recovered, gone). Key: feed URL. Producer: fetcher."""

ALL_TOPICS = (ITEMS, MATCHES, TOPICS, FEEDS, ALERTS, DLQ, FEED_HEALTH)
#: Topics whose latest value per key is the state (compacted on Apache Kafka).
COMPACTED_TOPICS = frozenset({TOPICS, FEEDS})

#: Header names of records on the DLQ.
DLQ_HEADERS = ("error", "error_type", "source_topic", "source_partition", "source_offset", "service")


class _Payload(BaseModel):
    """Base of every payload: immutable, tolerant of unknown (newer) fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    VERSION: ClassVar[int] = 1
    v: int = 1


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    feed_url: str
    feed_title: str = ""
    site: str = ""
    host: str = ""


class Enclosure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    url: str
    type: str = ""
    length: int | None = None


#: Values of Item.flags: what the fetcher had to repair, so consumers can tell.
ITEM_FLAGS = ("date_missing", "date_in_future", "language_detected")


class Item(_Payload):
    """A normalized feed entry as published on ``newswatch.items``.

    ``title`` and ``summary`` are plain text; ``content_html`` is sanitized HTML.
    ``published`` is always set (UTC): a missing date becomes the fetch time and a date in
    the future is clamped to it, each recorded in ``flags``. A material change of the title
    or summary is published again with the same ``item_id``, ``kind="update"`` and the next
    ``revision``.
    """

    item_id: str = Field(min_length=8, max_length=128)
    kind: Literal["new", "update"] = "new"
    revision: int = Field(default=1, ge=1, description="2, 3, … for material changes of the same item")
    url: str = ""
    canonical_url: str = ""
    title: str = ""
    summary: str = ""
    content_html: str = ""
    published: datetime | None = None
    updated: datetime | None = None
    fetched_at: datetime
    guid: str = ""
    language: str = ""
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    enclosures: tuple[Enclosure, ...] = ()
    flags: tuple[str, ...] = ()
    source: Source


class MatchReason(BaseModel):
    """Why an item matched.

    ``terms`` maps each query term (as the query prints it, e.g. ``"north korea"``,
    ``deploy*``, ``title:ukraine``) to the item words that satisfied it; ``snippet`` is the
    sentence with the most hits and ``highlights`` the character spans of the hits in it;
    ``score`` (0..1) is the share of the query's terms found, title hits counting double.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    terms: dict[str, list[str]] = Field(default_factory=dict)
    snippet: str = ""
    highlights: list[tuple[int, int]] = Field(default_factory=list)
    score: float = Field(default=0.0, ge=0.0, le=1.0)


class Match(_Payload):
    """An item matched a topic; carries the whole item so the notifier needs no lookup."""

    topic_id: str
    query: str
    item: Item
    reason: MatchReason
    matched_at: datetime
    for_owner: str | None = Field(
        default=None,
        description="only this owner's subscriptions get it (a backfill through the API); absent: all",
    )


class TopicDefinition(_Payload):
    """A watch topic as published on ``newswatch.topics``."""

    id: str
    query: str
    updated_at: datetime


class Alert(_Payload):
    """An alert that was delivered, as published on ``newswatch.alerts``."""

    alert_id: str
    subscription_id: str
    channel: Literal["webhook", "email", "apprise"] = "webhook"
    topic_id: str
    query: str
    item: Item
    reason: MatchReason
    delivered_at: datetime
    digest_id: str | None = Field(default=None, description="set when the alert went out in a digest")


class FeedDefinition(_Payload):
    """A runtime change to the feed list; overrides the config file's entry for ``url``."""

    url: str
    state: Literal["active", "paused", "removed"] = "active"
    interval: float | None = Field(default=None, ge=1.0)
    title: str = ""
    updated_at: datetime


class FeedHealth(_Payload):
    """A feed's health changed: ``active`` (recovered), ``unhealthy`` or ``gone`` (HTTP 410)."""

    feed_url: str
    status: Literal["active", "unhealthy", "gone"]
    failures: int
    error: str = ""
    at: datetime


P = TypeVar("P", bound=_Payload)


def encode(payload: _Payload) -> bytes:
    """Serialize a payload to compact JSON bytes."""
    return payload.model_dump_json(exclude_none=False).encode("utf-8")


#: Largest payload a reader accepts: an item carries at most its sanitized content (the
#: fetcher caps a whole feed at 10 MB); anything bigger is refused before it is parsed.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


def decode(model: type[P], raw: bytes | None) -> P:
    """Parse and validate ``raw`` as ``model``, or raise ContractError saying what is wrong.

    Whatever the bytes, this raises nothing else: the parser (pydantic-core's) refuses
    nesting deeper than 200 levels with an error instead of recursing (``json.loads`` raised
    RecursionError on deep input, which no handler expected), and the size is checked first.
    """
    if raw is None:
        raise ContractError(f"{model.__name__}: empty value (tombstone) where a payload was expected")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"{model.__name__}: {len(raw)} bytes, more than {MAX_PAYLOAD_BYTES} accepted")
    try:
        data: Any = from_json(raw)
    except ValueError as exc:
        raise ContractError(f"{model.__name__}: not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"{model.__name__}: expected a JSON object, got {type(data).__name__}")
    version = data.get("v")
    if version != model.VERSION:
        raise ContractError(
            f"{model.__name__}: unsupported schema version v={version!r}, expected {model.VERSION}"
        )
    try:
        return model.model_validate(data)
    except RecursionError as exc:  # not expected past the parser's own limit; never a crash
        raise ContractError(f"{model.__name__}: nested too deeply") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ContractError(
            f"{model.__name__}: {where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from exc
