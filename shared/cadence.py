"""When a subscription's alerts go out: its mode (immediate or a digest schedule) and quiet
hours, parsed from the text people write and evaluated in the subscriber's time zone (pure).

Modes: ``immediate``, ``hourly``, ``daily at HH:MM``, ``weekly on <day> at HH:MM``.
Quiet hours: ``HH:MM-HH:MM`` (may wrap midnight, ``22:00-07:00``). Times are wall-clock
times in the subscription's zone, so a daily 08:00 digest stays at 08:00 across daylight
saving changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = r"([01]?\d|2[0-3]):([0-5]\d)"
_DAILY = re.compile(rf"^daily at {_CLOCK}$")
_WEEKLY = re.compile(rf"^weekly on ([a-z]+) at {_CLOCK}$")
_QUIET = re.compile(rf"^{_CLOCK}\s*-\s*{_CLOCK}$")


@dataclass(frozen=True)
class Cadence:
    """``kind`` is immediate, hourly, daily or weekly; ``at`` and ``weekday`` as they apply."""

    kind: str
    at: time | None = None
    weekday: int | None = None  # 0 = Monday

    @property
    def immediate(self) -> bool:
        return self.kind == "immediate"

    def next_after(self, moment: datetime, zone: tzinfo) -> datetime:
        """The first scheduled digest time strictly after ``moment`` (UTC)."""
        if self.kind == "immediate":
            return moment
        local = moment.astimezone(zone)
        if self.kind == "hourly":
            top = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            return top.astimezone(UTC)
        assert self.at is not None
        day = local.date()
        for offset in range(0, 8):
            candidate_day = day + timedelta(days=offset)
            if self.weekday is not None and candidate_day.weekday() != self.weekday:
                continue
            candidate = _wall(candidate_day, self.at, zone)
            if candidate > moment:
                return candidate
        raise AssertionError("a daily or weekly time always falls within 8 days")


def _wall(day: date, at: time, zone: tzinfo) -> datetime:
    """``day`` at wall time ``at`` in ``zone``, as UTC. A wall time that a DST jump skips
    (02:30 on a spring-forward night) is read with the offset before the jump, so it runs
    as the clock reads 03:30: late by the gap, never skipped."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def parse_cadence(text: str) -> Cadence:
    """Raises ValueError saying what forms are accepted."""
    value = " ".join(text.lower().split())
    if value in ("immediate", "hourly"):
        return Cadence(value)
    if daily := _DAILY.match(value):
        return Cadence("daily", time(int(daily[1]), int(daily[2])))
    if weekly := _WEEKLY.match(value):
        if weekly[1] not in DAYS:
            raise ValueError(f"unknown day {weekly[1]!r} in {text!r}; expected one of {', '.join(DAYS)}")
        return Cadence("weekly", time(int(weekly[2]), int(weekly[3])), DAYS.index(weekly[1]))
    raise ValueError(
        f"unknown mode {text!r}; expected immediate, hourly, 'daily at HH:MM' or 'weekly on <day> at HH:MM'"
    )


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, moment: datetime, zone: tzinfo) -> bool:
        now = moment.astimezone(zone).time()
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end  # wraps midnight

    def ends_after(self, moment: datetime, zone: tzinfo) -> datetime:
        """When the quiet period holding ``moment`` ends (UTC); ``moment`` if it is not quiet."""
        if not self.contains(moment, zone):
            return moment
        day = moment.astimezone(zone).date()
        for offset in range(0, 2):
            end = _wall(day + timedelta(days=offset), self.end, zone)
            if end > moment:
                return end
        raise AssertionError("quiet hours end within a day")


def parse_quiet_hours(text: str) -> QuietHours:
    found = _QUIET.match(text.strip())
    if not found:
        raise ValueError(f"expected quiet hours as HH:MM-HH:MM (e.g. 22:00-07:00), got {text!r}")
    start = time(int(found[1]), int(found[2]))
    end = time(int(found[3]), int(found[4]))
    if start == end:
        raise ValueError(f"quiet hours {text!r} start and end at the same time")
    return QuietHours(start, end)


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; expected an IANA name such as Europe/Berlin") from exc
