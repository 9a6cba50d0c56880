"""The exception hierarchy of newswatch.

Library errors (pydantic, kafka-python, httpx, YAML) are converted into these at the
edge, so callers handle our vocabulary and never a third-party type.
"""

from __future__ import annotations


class NewswatchError(Exception):
    """Base of every error newswatch raises on purpose."""


class ConfigError(NewswatchError):
    """The configuration file or an environment override is invalid."""


class ContractError(NewswatchError):
    """A Kafka payload does not follow the versioned message contract."""


class KafkaUnavailableError(NewswatchError):
    """The broker could not be reached or did not answer in time."""


class PublishError(NewswatchError):
    """A record was not acknowledged by the broker; the caller must not treat it as sent."""


class BrokerStartError(NewswatchError):
    """The embedded broker could not be started."""


class BlockedAddressError(NewswatchError):
    """A URL resolves to an address outside the allowed networks (SSRF guard)."""
