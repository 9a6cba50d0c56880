"""The notifier's shared value types, so its modules import one way.

Intake → router → store on the way in; dispatcher → channels → render on the way out;
all of them import this module and it imports none of them. Pure: no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from newswatch.shared.config import SubscriptionConfig
from newswatch.shared.contract import Match
from newswatch.shared.tracing import trace_id

#: Channel kinds (bounded metric label values).
CHANNELS = ("webhook", "email", "apprise")
#: Routing outcomes of a (match, subscription) (bounded metric label values).
OUTCOMES = ("queued", "update", "digest", "held", "overflow", "duplicate", "repeat", "update_suppressed")


def channel_kind(url: str) -> str:
    """The channel a subscription's ``to:`` URL names."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        return "webhook"
    if scheme == "mailto":
        return "email"
    return "apprise"


@functools.lru_cache(maxsize=1024)
def payload_matches(payload: str) -> tuple[Match, ...]:
    """A stored delivery's matches, parsed once (a fan-out's rows share their payload): one for
    an alert, several for a digest (stored as a list), none for a log event."""
    if payload.startswith("["):
        return tuple(Match.model_validate(entry) for entry in json.loads(payload))
    if payload in ("", "{}"):
        return ()
    return (Match.model_validate_json(payload),)


def alert_id_for(subscription_id: str, item_id: str, revision: int = 1) -> str:
    """Stable per (subscription, item, revision): receivers dedup on it (``webhook-id``)."""
    key = f"{subscription_id}\x00{item_id}" + (f"\x00{revision}" if revision > 1 else "")
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Subscription:
    """A stored subscription: its validated spec, owner, webhook signing secret and status
    (``active``; ``paused`` by its owner; ``pending`` until its email address confirms it;
    ``unsubscribed`` by its recipient). Only active subscriptions are routed to."""

    spec: SubscriptionConfig
    owner: str
    secret: str
    status: str = "active"

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class Story:
    item_id: str
    story_item_id: str
    revision: int
    fingerprint: int


@dataclass(frozen=True)
class Report:
    """A near-duplicate of an alerted story, shown as "also reported by"."""

    item_id: str
    title: str
    url: str
    source: str


@dataclass(frozen=True)
class Delivery:
    """One row of the outbox / delivery log."""

    alert_id: str
    subscription_id: str
    kind: str  # alert (one match) or digest (several)
    topic_id: str | None
    item_id: str | None
    channel: str
    status: str  # pending (to send or retry), delivered, or dead (given up)
    attempts: int
    next_attempt_at: float  # when it is due (when read by a claim: before the claim's lease)
    created_at: float
    published_at: float | None
    delivered_at: float | None
    failure: str | None
    last_error: str | None
    payload: str
    traceparent: str | None = None  # the match's trace (W3C), for logs and the webhook
    destination: str | None = None  # see destinations.destination_of

    def as_dict(self) -> dict[str, Any]:
        """For the API's delivery log (without the payload)."""
        return {
            "alert_id": self.alert_id,
            "subscription": self.subscription_id,
            "kind": self.kind,
            "topic": self.topic_id,
            "item_id": self.item_id,
            "channel": self.channel,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
            "failure": self.failure,
            "error": self.last_error,
            "trace_id": trace_id(self.traceparent),
        }


@dataclass(frozen=True)
class AlertView:
    """What a person needs to judge one alert at a glance, ready for a template."""

    topic: str
    query: str
    title: str
    url: str
    source: str
    published: str
    terms: list[tuple[str, list[str]]]
    snippet_text: str
    snippet_md: str
    snippet_html: str
    also: list[Report]


@dataclass(frozen=True)
class Outgoing:
    """One message to send: an alert (one match) or a digest (several)."""

    message_id: str  # alert or digest id: the same on every attempt
    subscription_id: str
    to: str
    secret: str
    alert_ids: list[str]  # per match: its alert id (in a digest, each entry keeps its own)
    matches: list[Match]
    views: list[AlertView]
    digest: bool
    sent_at: datetime
    traceparent: str | None = None  # sent to webhooks as the W3C header of the same name
