"""The notifier's errors: delivery failures (split into the two classes operators act on
differently) and refusals of what an owner asked for."""

from __future__ import annotations

from newswatch.shared.errors import NewswatchError


class DeliveryError(NewswatchError):
    """A delivery attempt failed. ``permanent`` failures are not retried; ``retry_after``
    is the receiver's own request (HTTP Retry-After), in seconds."""

    def __init__(
        self, message: str, *, permanent: bool, reason: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.reason = reason  # bounded metric label
        self.retry_after = retry_after


class IdTakenError(NewswatchError):
    """A topic or subscription id belongs (or belonged) to another owner: ids are never reused
    across owners. The message names only the id, never the other owner or their objects."""


class LimitError(NewswatchError):
    """An owner reached a cap (topics, subscriptions) set by the operator."""
