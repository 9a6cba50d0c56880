"""WebSub rules without I/O: hub discovery, content signatures, lease and retry timing.

Kept pure so the spec's edge cases are tested without a hub: which link wins, which
signature is valid, when a lease is renewed and when a failed request is tried again.
The subscriber (``websub_subscriber``) applies them to real requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

#: Signature algorithms accepted on pushed content (the spec also allows sha1; it is too weak).
SIGNATURE_ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
#: The longest ``hub.challenge`` echoed back (the spec sets no bound; a hub needs a few dozen bytes).
MAX_CHALLENGE = 1024
#: The longest wait between attempts after failures.
MAX_RETRY = 86400.0


@dataclass(frozen=True)
class Hub:
    """Where to subscribe (``hub``) and to what (``topic``, the feed's self URL)."""

    hub: str
    topic: str


def _http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def header_links(value: str) -> list[tuple[str, str]]:
    """``(rel, url)`` pairs of a Link header value; a link with several rels gives one pair each."""
    if not value:
        return []
    pairs = []
    for link in httpx.Response(200, headers={"link": value[:8192]}).links.values():
        for rel in link.get("rel", "").lower().split():
            pairs.append((rel, link.get("url", "")))
    return pairs


def document_links(links: Any) -> list[tuple[str, str]]:
    """``(rel, url)`` pairs of a parsed feed's links (feedparser's ``feed.links``)."""
    pairs = []
    for link in links if isinstance(links, list) else ():
        if isinstance(link, Mapping):
            rel, href = link.get("rel"), link.get("href")
            if isinstance(rel, str) and isinstance(href, str):
                pairs.append((rel.lower(), href))
    return pairs


def discover(link_header: str, links: Any, fetched_url: str) -> Hub | None:
    """The hub and topic a feed advertises, or None.

    The spec's order: HTTP Link headers first, then the document's own links (Atom
    ``atom:link``, RSS with ``atom:link``, JSON Feed ``hubs``). The topic is the
    ``rel=self`` URL of the same source; without one, the URL the feed was fetched from.
    """
    for source in (header_links(link_header), document_links(links)):
        hub = _first(source, "hub", fetched_url)
        if hub:
            return Hub(hub, _first(source, "self", fetched_url) or fetched_url)
    return None


def _first(pairs: Iterable[tuple[str, str]], rel: str, base: str) -> str | None:
    for name, url in pairs:
        absolute = urljoin(base, url.strip())
        if name == rel and _http(absolute):
            return absolute
    return None


def new_callback_id() -> str:
    """An unguessable callback path segment: a push must not be forgeable by guessing it."""
    return secrets.token_urlsafe(24)


def new_secret() -> str:
    """The ``hub.secret`` (the spec caps it below 200 bytes)."""
    return secrets.token_hex(32)


def check_signature(header: str | None, secret: str, body: bytes) -> str | None:
    """Why a pushed body's ``X-Hub-Signature`` is not valid, or None when it is.

    Returns ``"unsigned"`` when the header is missing and ``"bad_signature"`` for a wrong,
    malformed or sha1 signature: the spec says to ignore such content.
    """
    if not header:
        return "unsigned"
    method, _, signature = header.strip().partition("=")
    digest = SIGNATURE_ALGORITHMS.get(method.strip().lower())
    if digest is None:
        return "bad_signature"
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return None if hmac.compare_digest(expected, signature.strip().lower()) else "bad_signature"


def renew_at(expires_at: float, lease: float, renew_before: float) -> float:
    """When to renew a lease ending at ``expires_at``: ``renew_before`` ahead, at most half the lease."""
    return expires_at - min(renew_before, lease / 2)


def retry_delay(failures: int, first: float) -> float:
    """The wait before the next attempt after ``failures`` failures in a row: doubling, capped at a day."""
    return min(first * 2.0 ** max(0, failures - 1), MAX_RETRY)


def callback_url(public_url: str, replica: int, callback_id: str) -> str:
    """The callback a hub is given: the replica's public address, then ``/websub/<id>``."""
    base = public_url.replace("{replica}", str(replica)).rstrip("/")
    return f"{base}/websub/{callback_id}"
