from __future__ import annotations

import ipaddress

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from newswatch.shared.errors import BlockedAddressError, NewswatchError
from newswatch.shared.health import Health
from newswatch.shared.http_server import ObservabilityServer
from newswatch.shared.netguard import NetGuard


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.4",
        "169.254.169.254",
        "::1",
        "fd00:ec2::254",
        "224.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
        "::ffff:127.0.0.1",
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    with pytest.raises(BlockedAddressError, match="not a public address"):
        NetGuard([]).check(address, 80)


def test_public_addresses_pass_and_allow_networks_open_private_ones() -> None:
    NetGuard([]).check("93.184.216.34", 443)
    NetGuard([ipaddress.ip_network("10.0.0.0/8")]).check("10.1.2.3", 80)
    with pytest.raises(BlockedAddressError):
        NetGuard([ipaddress.ip_network("10.0.0.0/8")]).check("169.254.169.254", 80)


def test_every_resolved_address_is_checked() -> None:
    guard = NetGuard([], resolver=lambda host, port: ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(BlockedAddressError, match=r"news\.example resolves to 127\.0\.0\.1"):
        guard.check("news.example", 80)


def test_health_liveness_and_readiness() -> None:
    now = [0.0]
    health = Health(stall_after=10, clock=lambda: now[0])
    assert health.alive() == (True, "ok")
    assert health.ready() == (False, "starting")
    health.set_ready()
    assert health.ready() == (True, "ok")
    health.set_not_ready("kafka: unreachable")
    assert health.ready() == (False, "kafka: unreachable")
    health.set_ready()
    now[0] = 11.0
    assert health.alive() == (False, "main loop stalled for 11s")
    assert health.ready()[0] is False
    health.beat()
    assert health.alive()[0] is True


def test_observability_server_serves_metrics_and_health() -> None:
    registry = CollectorRegistry()
    Counter("newswatch_test_things_total", "Things.", registry=registry).inc(3)
    health = Health()
    server = ObservabilityServer("127.0.0.1", 0, registry, health)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert "newswatch_test_things_total 3.0" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/healthz").status_code == 200
        not_ready = httpx.get(f"{base}/readyz")
        assert not_ready.status_code == 503 and not_ready.text.strip() == "starting"
        health.set_ready()
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/nope").status_code == 404
        with pytest.raises(NewswatchError, match="cannot serve /metrics"):
            ObservabilityServer("127.0.0.1", server.port, registry, health)
    finally:
        server.stop()
