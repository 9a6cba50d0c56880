"""Where deliveries go, and how each destination is doing (pure; the clock is passed in).

A destination is what one failure says something about: a webhook's scheme, host and
port (every subscription posting to one receiver shares it), the SMTP server for email,
an Apprise service's scheme and (hashed) host. Each has a circuit:

- ``closed``: deliveries go. ``circuit_failures`` transient failures in a row open it.
- ``open``: its deliveries wait (they are not attempted, so they burn no attempts and do
  not hammer a receiver that is down) until a probe is due: after ``retry_backoff``,
  doubling per failed probe up to ``retry_backoff_max`` (jittered).
- ``half_open``: exactly one delivery goes as the probe. Its success closes the circuit and
  every waiting delivery is due at once; its failure opens it again.

A permanent failure (the receiver answered, with a 4xx) says the destination is up and
counts as a success for its circuit. Each notifier replica keeps its own circuits.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from newswatch.notifier.model import channel_kind

State = Literal["closed", "open", "half_open"]
STATES: tuple[State, ...] = ("closed", "open", "half_open")
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Closed circuits idle this long are forgotten (the state of a destination not used lately).
_IDLE = 3600.0


def destination_of(to: str, smtp_host: str) -> str:
    """The destination key of a channel URL; never holds a credential (it is logged)."""
    kind = channel_kind(to)
    if kind == "email":
        return f"smtp://{smtp_host.lower()}"
    parts = urlsplit(to)
    scheme = parts.scheme.lower()
    if kind == "webhook":
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        return f"{scheme}://{host}:{port}"
    # An Apprise URL's host is often a token (tgram://TOKEN/chat): keep only its hash.
    digest = hashlib.sha256(parts.netloc.encode()).hexdigest()[:12]
    return f"{scheme}://#{digest}"


@dataclass
class Circuit:
    state: State = "closed"
    failures: int = 0  # transient failures in a row
    opened: int = 0  # times opened in a row (probes that failed, plus one)
    probe_at: float = 0.0
    used_at: float = 0.0


Verdict = Literal["send", "probe", "wait"]


class Destinations:
    """Every destination's circuit. Not thread-safe: owned by the delivery loop."""

    def __init__(
        self, failures_to_open: int, backoff: float, backoff_max: float, rng: random.Random | None = None
    ) -> None:
        self._threshold = failures_to_open
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._circuits: dict[str, Circuit] = {}

    def _get(self, key: str, now: float) -> Circuit:
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = Circuit()
        circuit.used_at = now
        return circuit

    def verdict(self, key: str, now: float) -> Verdict:
        """Whether a delivery to ``key`` goes now, goes as the probe, or waits."""
        circuit = self._get(key, now)
        if circuit.state == "closed":
            return "send"
        if circuit.state == "open" and now >= circuit.probe_at:
            circuit.state = "half_open"
            return "probe"
        return "wait"

    def wait_until(self, key: str) -> float:
        """When a waiting delivery to ``key`` should be looked at again (its next probe)."""
        circuit = self._circuits.get(key)
        return circuit.probe_at if circuit is not None else 0.0

    def succeeded(self, key: str, now: float) -> bool:
        """Records a success; True when it closed an open circuit (the destination recovered)."""
        circuit = self._get(key, now)
        recovered = circuit.state != "closed"
        circuit.state, circuit.failures, circuit.opened = "closed", 0, 0
        return recovered

    def failed(self, key: str, now: float) -> bool:
        """Records a transient failure; True when it opened the circuit."""
        circuit = self._get(key, now)
        circuit.failures += 1
        if circuit.state == "half_open" or (
            circuit.state == "closed" and circuit.failures >= self._threshold
        ):
            circuit.opened += 1
            cap = min(self._backoff_max, self._backoff * 2 ** (circuit.opened - 1))
            circuit.probe_at = now + self._rng.uniform(cap / 2, cap)
            opened = circuit.state == "closed"
            circuit.state = "open"
            return opened
        return False

    def released(self, key: str) -> None:
        """The probe was not sent after all (shutdown): another may go."""
        circuit = self._circuits.get(key)
        if circuit is not None and circuit.state == "half_open":
            circuit.state = "open"

    def probes_due(self, now: float) -> list[str]:
        """Open destinations whose probe is due (a delivery to them should be taken now)."""
        return [key for key, c in self._circuits.items() if c.state == "open" and now >= c.probe_at]

    def blocked(self) -> set[str]:
        """Destinations whose deliveries wait (open, or a probe in flight)."""
        return {key for key, c in self._circuits.items() if c.state != "closed"}

    def state(self, key: str) -> State:
        circuit = self._circuits.get(key)
        return circuit.state if circuit is not None else "closed"

    def counts(self, now: float) -> dict[State, int]:
        """Destinations per state (for the gauge); idle closed circuits are forgotten here."""
        for key in [k for k, c in self._circuits.items() if c.state == "closed" and now - c.used_at > _IDLE]:
            del self._circuits[key]
        counts = dict.fromkeys(STATES, 0)
        for circuit in self._circuits.values():
            counts[circuit.state] += 1
        return counts
