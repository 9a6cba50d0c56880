"""Each service's registry carries the process and Python collectors besides its own metrics."""

from __future__ import annotations

import gc

from newswatch.shared.metrics import service_registry


def test_process_and_python_metrics_are_exported() -> None:
    registry = service_registry()
    gc.collect()
    assert (registry.get_sample_value("process_cpu_seconds_total") or 0) > 0
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 0
    assert registry.get_sample_value("python_gc_collections_total", {"generation": "2"}) is not None
    info = [s for m in registry.collect() if m.name == "python_info" for s in m.samples]
    assert info and info[0].labels["implementation"] == "CPython"
