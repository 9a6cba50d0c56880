"""The JSON webhook channel: payload, one POST, and httpx errors → DeliveryError."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx

from newswatch.notifier.errors import DeliveryError
from newswatch.shared.contract import Match
from newswatch.shared.errors import BlockedAddressError
from newswatch.shared.netguard import NetGuard, guarded_transport


def webhook_payload(alert_id: str, subscription_id: str, match: Match, sent_at: datetime) -> dict[str, Any]:
    """The documented JSON body of a webhook alert (``type`` and ``v`` version it)."""
    item = match.item
    return {
        "type": "newswatch.alert",
        "v": 1,
        "alert_id": alert_id,
        "subscription": subscription_id,
        "topic": {"id": match.topic_id, "query": match.query},
        "item": {
            "id": item.item_id,
            "title": item.title,
            "url": item.url,
            "summary": item.summary,
            "published": item.published.isoformat() if item.published else None,
            "source": {
                "feed_url": item.source.feed_url,
                "title": item.source.feed_title,
                "host": item.source.host,
            },
        },
        "why": {
            "terms": match.reason.terms,
            "snippet": match.reason.snippet,
            "highlights": [list(span) for span in match.reason.highlights],
            "score": match.reason.score,
        },
        "sent_at": sent_at.isoformat(),
    }


def make_client(timeout: float, guard: NetGuard, user_agent: str) -> httpx.Client:
    """Webhook client: every connection goes to an address the SSRF guard vetted."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,  # a webhook that redirects is misconfigured; never re-POST elsewhere
        headers={"User-Agent": user_agent},
        transport=guarded_transport(guard, httpx.Limits()),
    )


def post_webhook(client: httpx.Client, url: str, alert_id: str, body: dict[str, Any]) -> None:
    """POST once; 2xx is success, 408/429/5xx/network are transient, other 4xx permanent."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    try:
        response = client.post(
            url, content=data, headers={"Content-Type": "application/json", "webhook-id": alert_id}
        )
    except BlockedAddressError as exc:
        raise DeliveryError(f"{url}: {exc}", permanent=True, reason="blocked") from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{url}: {type(exc).__name__}: {exc}", permanent=False, reason="network") from exc
    status = response.status_code
    if 200 <= status < 300:
        return
    if status < 400:  # 1xx/3xx: the endpoint is not a webhook receiver
        raise DeliveryError(f"{url}: unexpected HTTP {status}", permanent=True, reason="http_other")
    permanent = status < 500 and status not in (408, 429)
    reason = "http_4xx" if status < 500 else "http_5xx"
    raise DeliveryError(f"{url}: HTTP {status}", permanent=permanent, reason=reason)
