"""Human durations (``90s``, ``5m``, ``1h30m``) as used in the config file, and the delays
that HTTP servers ask for (Retry-After)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float) -> float:
    """Return seconds for ``text``; plain numbers are seconds.

    Raises ValueError with the accepted forms, because this message reaches the user
    verbatim through config validation.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h30m")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        cleaned = text.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", cleaned):
            seconds = float(cleaned)
        else:
            pos = 0
            seconds = 0.0
            for match in _PART.finditer(cleaned):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(cleaned) or not cleaned:
                raise ValueError(f"expected a duration such as 30s, 5m or 1h30m, got {text!r}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {text!r}")
    return seconds


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by an HTTP Retry-After header: delta-seconds or an HTTP date (a date
    without a zone is read as UTC); None if absent or unreadable. Feeds and webhook
    receivers both send it."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
