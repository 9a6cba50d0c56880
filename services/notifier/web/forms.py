"""A subscription as a person fills it in (channel, address, rhythm, quiet hours …) and as
the API stores it (``SubscriptionConfig``), both ways. Pure: no request, no database."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from newswatch.notifier.model import channel_kind
from newswatch.shared.config import SubscriptionConfig

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
RHYTHMS = ("immediate", "hourly", "daily", "weekly")
CHANNELS = ("email", "webhook", "app")
_DAILY = re.compile(r"^daily at (\d\d:\d\d)$")
_WEEKLY = re.compile(r"^weekly on (\w+) at (\d\d:\d\d)$")
#: Where a SubscriptionConfig error shows in the form.
_FIELD_OF = {
    "id": "id",
    "topics": "topics",
    "to": "address",
    "mode": "rhythm",
    "timezone": "timezone",
    "quiet_hours": "quiet",
    "snooze_until": "snooze_until",
    "max_per_hour": "max_per_hour",
}


@dataclass
class SubscriptionForm:
    id: str = ""
    topics: list[str] = field(default_factory=list)
    channel: str = "email"
    address: str = ""
    rhythm: str = "immediate"
    at: str = "08:00"
    day: str = "monday"
    timezone: str = "UTC"
    quiet_from: str = ""
    quiet_to: str = ""
    snooze_until: str = ""
    max_per_hour: str = ""
    updates: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_form(cls, data: Mapping[str, str], topics: Sequence[str]) -> SubscriptionForm:
        return cls(
            id=data.get("id", "").strip(),
            topics=list(topics),
            channel=data.get("channel", "email"),
            address=data.get("address", "").strip(),
            rhythm=data.get("rhythm", "immediate"),
            at=data.get("at", "08:00") or "08:00",
            day=data.get("day", "monday"),
            timezone=data.get("timezone", "UTC").strip() or "UTC",
            quiet_from=data.get("quiet_from", ""),
            quiet_to=data.get("quiet_to", ""),
            snooze_until=data.get("snooze_until", ""),
            max_per_hour=data.get("max_per_hour", "").strip(),
            updates=data.get("updates") == "on",
        )

    @classmethod
    def from_spec(cls, spec: SubscriptionConfig) -> SubscriptionForm:
        kind = channel_kind(spec.to)
        form = cls(
            id=spec.id,
            topics=list(spec.topics),
            channel={"email": "email", "webhook": "webhook"}.get(kind, "app"),
            address=spec.to.removeprefix("mailto:") if kind == "email" else spec.to,
            timezone=spec.timezone,
            max_per_hour=str(spec.max_per_hour or ""),
            updates=spec.updates,
        )
        if (daily := _DAILY.match(spec.mode)) is not None:
            form.rhythm, form.at = "daily", daily.group(1)
        elif (weekly := _WEEKLY.match(spec.mode)) is not None:
            form.rhythm, form.day, form.at = "weekly", weekly.group(1), weekly.group(2)
        else:
            form.rhythm = spec.mode if spec.mode in RHYTHMS else "immediate"
        if spec.quiet_hours:
            form.quiet_from, _, form.quiet_to = spec.quiet_hours.partition("-")
        if spec.snooze_until is not None:
            try:
                zone = ZoneInfo(spec.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                zone = ZoneInfo("UTC")
            form.snooze_until = spec.snooze_until.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
        return form

    def mode(self) -> str:
        if self.rhythm == "daily":
            return f"daily at {self.at}"
        if self.rhythm == "weekly":
            return f"weekly on {self.day} at {self.at}"
        return self.rhythm

    def to(self) -> str:
        if self.channel == "email":
            return "mailto:" + self.address.removeprefix("mailto:")
        return self.address

    def spec(self, new_id: str) -> SubscriptionConfig | None:
        """The subscription, or None with ``errors`` filled in (field → message)."""
        self.errors.clear()
        if not self.topics:
            self.errors["topics"] = "choose at least one topic"
        if not self.address:
            self.errors["address"] = "where should the alerts go?"
        if self.rhythm not in RHYTHMS:
            self.errors["rhythm"] = f"choose one of {', '.join(RHYTHMS)}"
        if bool(self.quiet_from) != bool(self.quiet_to):
            self.errors["quiet"] = "give both ends of the quiet hours, or neither"
        snooze = None
        if self.snooze_until:
            try:
                snooze = datetime.fromisoformat(self.snooze_until).replace(tzinfo=ZoneInfo(self.timezone))
            except (ValueError, ZoneInfoNotFoundError):
                self.errors["snooze_until"] = "expected a date and time, e.g. 2026-12-24T18:00"
        max_per_hour: int | None = None
        if self.max_per_hour:
            if not self.max_per_hour.isdigit():
                self.errors["max_per_hour"] = "a whole number, or empty for no limit"
            else:
                max_per_hour = int(self.max_per_hour)
        try:  # validated even when a field above is wrong, so every wrong field is named at once
            spec = SubscriptionConfig(
                id=self.id or new_id,
                topics=tuple(self.topics) or ("any",),
                to=self.to() if self.address else "mailto:any@example.org",
                mode=self.mode() if self.rhythm in RHYTHMS else "immediate",
                timezone=self.timezone,
                quiet_hours=f"{self.quiet_from}-{self.quiet_to}"
                if self.quiet_from and self.quiet_to
                else None,
                snooze_until=snooze,
                max_per_hour=max_per_hour,
                updates=self.updates,
            )
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                name = _FIELD_OF.get(str(error["loc"][0]) if error["loc"] else "", "form")
                self.errors.setdefault(name, str(error["msg"]).removeprefix("Value error, "))
            return None
        return None if self.errors else spec


def new_subscription_id(topics: Sequence[str]) -> str:
    """A readable, free id for a subscription made in the app: its first topic and 6 hex."""
    stem = re.sub(r"[^a-z0-9._-]", "-", (topics[0] if topics else "alerts").lower())[:50].strip("-._")
    return f"{stem or 'alerts'}-{secrets.token_hex(3)}"
