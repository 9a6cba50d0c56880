"""The exception hierarchy of newswatch.

Library errors (pydantic, kafka-python, httpx, YAML) are converted into these at the
edge, so callers handle our vocabulary and never a third-party type.

``transient`` tells a retry policy what kind of failure it has: an outage of something the
work depends on (the broker, the database), which heals by itself and is retried for as
long as it lasts, or a failure tied to the work itself, which is retried a bounded number of
times and then set aside (dead-lettered), so one bad record never stalls the rest.
"""

from __future__ import annotations


class NewswatchError(Exception):
    """Base of every error newswatch raises on purpose."""

    transient: bool = False


class ConfigError(NewswatchError):
    """The configuration file or an environment override is invalid."""


class ContractError(NewswatchError):
    """A Kafka payload does not follow the versioned message contract."""


class KafkaUnavailableError(NewswatchError):
    """The broker could not be reached or did not answer in time."""

    transient = True


class PublishError(NewswatchError):
    """A record was not acknowledged by the broker; the caller must not treat it as sent."""

    transient = True


class KafkaSendError(PublishError):
    """One send was refused or not acknowledged in time (raised by a producer backend)."""


class KafkaCommitError(NewswatchError):
    """An offset commit failed (the records will be delivered again)."""

    transient = True


class BrokerStartError(NewswatchError):
    """The embedded broker could not be started."""


class BlockedAddressError(NewswatchError):
    """A URL resolves to an address outside the allowed networks (SSRF guard)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage to wait out rather than a failure of the work itself."""
    return isinstance(exc, NewswatchError) and exc.transient
