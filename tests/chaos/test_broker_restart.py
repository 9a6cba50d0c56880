"""The broker restarts empty (the embedded broker keeps nothing) under the running pipeline:
the services recover without being restarted (producers rebuilt, groups rejoined, readers
back at offset 0 of the recreated topics, topic definitions re-published by the notifier),
and items fetched afterwards are matched and delivered, including a burst that lands before
the consumers have noticed the loss (the new logs grow past their old positions).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newswatch.shared.broker import EmbeddedBroker
from tests.support.chaos import SERVICES, Trickle, rig, settle, wait_delivered

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.chaos,
]  # not in make test: see the README (broker that lost its data)


@pytest.mark.parametrize(
    "burst", [pytest.param(20, id="quick"), pytest.param(60, id="full", marks=pytest.mark.chaos)]
)
def test_pipeline_recovers_from_a_broker_that_lost_its_data(
    burst: int, tmp_path: Path, broker: EmbeddedBroker
) -> None:
    with rig(tmp_path, broker, notifier={"topics_check": "2s"}) as pipeline:
        with Trickle(pipeline.farm, 16, 0.1) as trickle:
            trickle.finish()
        assert wait_delivered(pipeline, 90)
        pids = {name: pipeline.procs[name].pid for name in SERVICES}
        broker.stop()
        broker.start()  # same address, no topics, no offsets, no groups
        for _ in range(burst):
            pipeline.farm.publish()
        row = settle(pipeline, f"broker restarted empty, {burst} items at once", timeout=90)
        assert {name: pipeline.procs[name].pid for name in SERVICES} == pids  # nobody was restarted
        assert pipeline.alive()
    assert row.missing == 0
    assert row.duplicated == 0
