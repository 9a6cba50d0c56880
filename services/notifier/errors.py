"""Delivery failures, split into the two classes operators act on differently."""

from __future__ import annotations

from newswatch.shared.errors import NewswatchError


class DeliveryError(NewswatchError):
    """A delivery attempt failed. ``permanent`` failures are not retried."""

    def __init__(self, message: str, *, permanent: bool, reason: str) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.reason = reason  # bounded metric label
