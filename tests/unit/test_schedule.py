from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newswatch.fetcher.schedule import (
    Hints,
    Policy,
    hints_from,
    next_after_error,
    next_after_success,
    observed_gap,
)
from newswatch.shared.durations import parse_retry_after

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday
POLICY = Policy(min_interval=60, max_interval=3600, unhealthy_after=10, jitter=0.2)
MID = lambda: 0.5  # noqa: E731 - no jitter: rand() = 0.5 → factor 1.0


def seconds(when: datetime) -> float:
    return (when - NOW).total_seconds()


def test_hints_from_a_feed() -> None:
    body = b"<rss><channel><skipHours><hour>1</hour><hour>2</hour><hour>24</hour></skipHours><skipDays><day>Sunday</day></skipDays></channel></rss>"
    hints = hints_from(
        {"ttl": "30", "sy_updateperiod": "hourly", "sy_updatefrequency": "2"}, body, "public, max-age=600"
    )
    assert hints.min_seconds == 1800  # ttl 30 min beats 30 min from sy and 10 min max-age
    assert hints.skip_hours == {0, 1, 2}
    assert hints.skip_days == {6}
    assert hints_from({}, b"<rss/>", "") == Hints()


def test_nonsense_skip_lists_are_ignored() -> None:
    every_hour = b"<skipHours>" + b"".join(b"<hour>%d</hour>" % h for h in range(24)) + b"</skipHours>"
    assert hints_from({}, every_hour, "").skip_hours == frozenset()


def test_observed_gap_is_the_median_of_recent_gaps() -> None:
    times = [NOW - timedelta(minutes=m) for m in (0, 10, 20, 30, 100)]
    assert observed_gap(times) == 600
    assert observed_gap(times[:2]) is None


@pytest.mark.parametrize(
    ("fixed", "gap", "expected"),
    [(None, None, 60), (None, 1200, 600), (None, 10, 60), (None, 86400, 3600), (300, 10, 300), (5, None, 5)],
)
def test_success_interval(fixed: float | None, gap: float | None, expected: float) -> None:
    assert seconds(next_after_success(NOW, fixed, gap, Hints(), POLICY, MID)) == expected


def test_publisher_hints_are_lower_bounds_up_to_the_maximum() -> None:
    assert seconds(next_after_success(NOW, None, None, Hints(min_seconds=900), POLICY, MID)) == 900
    assert seconds(next_after_success(NOW, None, None, Hints(min_seconds=86400), POLICY, MID)) == 3600


def test_skip_hours_and_days_move_the_poll() -> None:
    hints = Hints(skip_hours=frozenset({10, 11}))
    assert next_after_success(NOW, 60, None, hints, POLICY, MID) == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    thursday = Hints(skip_days=frozenset({3}))
    late = datetime(2026, 11, 25, 23, 59, tzinfo=UTC)
    assert next_after_success(late, 120, None, thursday, POLICY, MID) == datetime(
        2026, 11, 27, 0, 0, tzinfo=UTC
    )


def test_jitter_spreads_polls() -> None:
    low = seconds(next_after_success(NOW, 1000, None, Hints(), POLICY, lambda: 0.0))
    high = seconds(next_after_success(NOW, 1000, None, Hints(), POLICY, lambda: 1.0))
    assert (low, high) == (800, 1200)


def test_error_backoff_retry_after_and_unhealthy() -> None:
    assert [seconds(next_after_error(NOW, n, 60, None, POLICY, MID)) for n in (1, 2, 3, 7)] == [
        60,
        120,
        240,
        3600,
    ]
    assert seconds(next_after_error(NOW, 1, 60, 900, POLICY, MID)) == 900
    assert seconds(next_after_error(NOW, 10, 60, None, POLICY, MID)) == 3600


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Wed, 25 Nov 2026 10:05:00 GMT", NOW) == 300
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_host_limiter_bounds_concurrency_per_host_and_forgets_idle_hosts() -> None:
    import asyncio

    from newswatch.fetcher.politeness import HostLimiter

    limiter = HostLimiter(2)
    active: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    async def fetch(host: str) -> None:
        async with limiter.slot(f"https://{host}.example/feed"):
            active[host] += 1
            peak[host] = max(peak[host], active[host])
            await asyncio.sleep(0.01)
            active[host] -= 1

    async def main() -> None:
        await asyncio.gather(*(fetch(h) for h in "ab" * 6))

    asyncio.run(main())
    assert peak == {"a": 2, "b": 2}
    assert not limiter._slots  # no semaphore kept for hosts with nothing in flight
