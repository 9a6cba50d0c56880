"""Trace context carried in Kafka headers from fetch to delivery (W3C ``traceparent``).

The fetcher starts a trace for every item it publishes; the matcher copies the item's trace
onto each match (a new span, the same trace id); the notifier keeps it with the delivery,
logs it, sends it to webhooks as ``traceparent`` and puts it on ``newswatch.alerts``. An
operator follows one story through every service's JSON logs by its ``trace_id``. Pure.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    """A new trace with a root span (sampled flag set: we log every trace)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child(parent: str | None) -> str:
    """A new span in ``parent``'s trace, or a new trace if ``parent`` is absent or malformed."""
    found = _TRACEPARENT.match(parent or "")
    if found is None:
        return new_traceparent()
    return f"00-{found[1]}-{secrets.token_hex(8)}-{found[3]}"


def trace_id(traceparent: str | None) -> str | None:
    found = _TRACEPARENT.match(traceparent or "")
    return found[1] if found else None


def from_headers(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The ``traceparent`` of a consumed record's headers, if it carries a valid one."""
    for name, value in headers or ():
        if name == HEADER:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            return text if _TRACEPARENT.match(text) else None
    return None
