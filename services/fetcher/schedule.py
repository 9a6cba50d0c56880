"""When to poll a feed next (pure logic: the clock and randomness are passed in).

- **Adaptive.** Without a fixed ``interval`` the feed is polled about twice per observed
  gap between its entries, bounded by ``min_interval`` and ``max_interval``.
- **Publisher hints.** RSS ``ttl``, ``sy:updatePeriod``/``updateFrequency`` and
  ``Cache-Control: max-age`` are lower bounds (up to ``max_interval``); ``skipHours`` and
  ``skipDays`` (UTC) move a poll to the next allowed hour.
- **Errors.** Exponential backoff with ±20% jitter, at least ``Retry-After``; after
  ``unhealthy_after`` failures in a row the feed is unhealthy and polled at ``max_interval``
  until it recovers by itself.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

_PERIODS = {
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 7 * 86400.0,
    "monthly": 30 * 86400.0,
    "yearly": 365 * 86400.0,
}
_DAYS = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6}
_SKIP_HOURS = re.compile(rb"<skipHours>(.*?)</skipHours>", re.IGNORECASE | re.DOTALL)
_SKIP_DAYS = re.compile(rb"<skipDays>(.*?)</skipDays>", re.IGNORECASE | re.DOTALL)
_HOUR = re.compile(rb"<hour>\s*(\d{1,2})\s*</hour>", re.IGNORECASE)
_DAY = re.compile(rb"<day>\s*([A-Za-z]+)\s*</day>", re.IGNORECASE)
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Hints:
    """What the publisher says about polling (all optional)."""

    min_seconds: float | None = None  # ttl / sy:updatePeriod / Cache-Control max-age, the largest
    skip_hours: frozenset[int] = field(default_factory=frozenset)  # UTC hours 0-23
    skip_days: frozenset[int] = field(default_factory=frozenset)  # 0 = Monday


@dataclass(frozen=True)
class Policy:
    min_interval: float
    max_interval: float
    unhealthy_after: int = 10
    jitter: float = 0.2


def hints_from(feed: dict[str, object], body: bytes, cache_control: str) -> Hints:
    """Collect the hints of one fetched feed (feedparser's feed dict, raw body, response header)."""
    bounds = []
    ttl = str(feed.get("ttl") or "").strip()
    if ttl.isdigit():
        bounds.append(int(ttl) * 60.0)
    period = _PERIODS.get(str(feed.get("sy_updateperiod") or "").strip().lower())
    if period:
        frequency = str(feed.get("sy_updatefrequency") or "1").strip()
        bounds.append(period / max(1, int(frequency)) if frequency.isdigit() else period)
    max_age = _MAX_AGE.search(cache_control or "")
    if max_age:
        bounds.append(float(max_age.group(1)))
    hours: set[int] = set()
    days: set[int] = set()
    if (block := _SKIP_HOURS.search(body)) is not None:
        hours = {int(h) % 24 for h in _HOUR.findall(block.group(1)) if int(h) <= 24}
    if (block := _SKIP_DAYS.search(body)) is not None:
        days = {
            _DAYS[d.decode().lower()] for d in _DAY.findall(block.group(1)) if d.decode().lower() in _DAYS
        }
    if len(hours) >= 24:
        hours = set()  # skipping every hour would mean never polling: ignore the nonsense
    if len(days) >= 7:
        days = set()
    return Hints(max(bounds) if bounds else None, frozenset(hours), frozenset(days))


def observed_gap(published: Iterable[datetime], sample: int = 10) -> float | None:
    """Median gap in seconds between the feed's most recent distinct entry times (None if < 3)."""
    times = sorted(set(published), reverse=True)[:sample]
    if len(times) < 3:
        return None
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(times)]
    return float(statistics.median(gaps))


def _jittered(seconds: float, policy: Policy, rand: Callable[[], float]) -> float:
    return seconds * (1 - policy.jitter + 2 * policy.jitter * rand())


def _allowed(when: datetime, hints: Hints) -> datetime:
    """The first moment at or after ``when`` outside skipHours/skipDays (searches one week)."""
    candidate = when
    for _ in range(24 * 8):
        if candidate.hour not in hints.skip_hours and candidate.weekday() not in hints.skip_days:
            return candidate
        candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return when


def next_after_success(
    now: datetime,
    fixed_interval: float | None,
    gap: float | None,
    hints: Hints,
    policy: Policy,
    rand: Callable[[], float],
) -> datetime:
    if fixed_interval is not None:
        seconds = fixed_interval
    else:
        seconds = min(max(gap / 2 if gap else policy.min_interval, policy.min_interval), policy.max_interval)
    if hints.min_seconds:
        seconds = max(seconds, min(hints.min_seconds, policy.max_interval))
    return _allowed(now + timedelta(seconds=_jittered(seconds, policy, rand)), hints)


def next_after_error(
    now: datetime,
    failures: int,
    base: float,
    retry_after: float | None,
    policy: Policy,
    rand: Callable[[], float],
) -> datetime:
    """``failures`` counts this one too (≥ 1)."""
    if failures >= policy.unhealthy_after:
        seconds = policy.max_interval
    else:
        seconds = min(base * 2 ** (failures - 1), policy.max_interval)
    seconds = _jittered(seconds, policy, rand)
    if retry_after is not None:
        seconds = max(seconds, min(retry_after, 86400.0))
    return now + timedelta(seconds=seconds)
