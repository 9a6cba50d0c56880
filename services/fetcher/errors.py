"""Fetch failures, each with the bounded outcome label it is counted under."""

from __future__ import annotations

from newswatch.shared.errors import NewswatchError


class FetchError(NewswatchError):
    """A poll failed; ``outcome`` is the newswatch_fetcher_polls_total label."""

    outcome = "network_error"


class HttpStatusError(FetchError):
    outcome = "http_error"

    def __init__(self, message: str, status: int = 0, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # the raw Retry-After header (429/503)


class NetworkError(FetchError):
    outcome = "network_error"


class BlockedError(FetchError):
    outcome = "blocked"


class TooLargeError(FetchError):
    outcome = "too_large"


class ParseError(FetchError):
    outcome = "parse_error"
