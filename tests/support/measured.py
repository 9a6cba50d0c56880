"""Figures a test measured on the way (latencies, rates), printed in the run's summary.

Tests assert behaviour, never timing; what they measure is reported here so a run shows it
(bench/README.md records the figures).
"""

from __future__ import annotations

MEASURED: list[str] = []
