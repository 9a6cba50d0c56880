"""Canonical URLs: one spelling per article, so the same story from two feeds is recognised.

Lower-case scheme and host, default port dropped, fragment dropped, tracking parameters
(``utm_*``, ``fbclid``, ``gclid``…) removed, remaining query parameters sorted. The path
is kept as given (servers may be case-sensitive).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

_TRACKING_PREFIXES = ("utm_", "_hs", "mc_", "pk_", "mtm_")
_TRACKING_NAMES = frozenset(
    {"fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "igshid", "twclid", "ttclid", "wickedid",
     "ocid", "cmpid", "ncid", "cid_source", "ref_src", "ref_url", "_ga", "_gl", "oly_enc_id", "oly_anon_id",
     "vero_id", "s_kwcid", "rss_source"}
)  # fmt: skip
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ABSOLUTE = ("http://", "https://")


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_NAMES or lowered.startswith(_TRACKING_PREFIXES)


def canonical_url(link: str, base: str = "") -> str:
    """The canonical form of ``link`` (resolved against ``base``); "" when it is not a web URL."""
    link = link.strip()
    if not link:
        return ""
    if base and not link.startswith(_ABSOLUTE):  # urljoin is the costly part; most links are absolute
        link = urljoin(base, link)
    try:
        parts = urlsplit(link)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode(sorted((k, v) for k, v in pairs if not _is_tracking(k)))
    return urlunsplit((scheme, host, parts.path or "/", query, ""))
