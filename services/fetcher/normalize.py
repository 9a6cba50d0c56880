"""Feed entries → contract Items (pure functions, no I/O)."""

from __future__ import annotations

import calendar
import functools
import hashlib
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import nh3

from newswatch.fetcher.canonical import canonical_url
from newswatch.fetcher.dates import parse_localized_rfc822
from newswatch.fetcher.language import detect_language
from newswatch.shared.contract import Enclosure, Item, Source

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


#: Plain dict lookups: FeedParserDict.get maps legacy aliases on every call, which costs more
#: than the rest of normalization; the keys used here are feedparser's canonical ones.
_get = dict.get
_BLOCK_TAG = re.compile(r"<(/?)(p|br|div|li|ul|ol|h[1-6]|tr|td|th|blockquote|pre|hr|dd|dt)\b", re.IGNORECASE)
_TEXT_ONLY = nh3.Cleaner(tags=set(), clean_content_tags={"script", "style", "noscript", "template", "title"})


def plain_text(value: str) -> str:
    """HTML or text → plain text: tags stripped, entities decoded, whitespace collapsed.

    Block-level tags become spaces so that ``<p>a</p><p>b</p>`` reads "a b", not "ab".
    """
    if "<" in value:
        value = html.unescape(_TEXT_ONLY.clean(_BLOCK_TAG.sub(r" <\1\2", value)))
    elif "&" in value:
        value = html.unescape(value)
    if not value.isprintable():  # control characters (XML forbids most; feeds send them anyway)
        value = _CONTROL.sub("", value)
    return _SPACE.sub(" ", value).strip()


def item_id_for(feed_url: str, entry: Any) -> str:
    """Stable id: the entry's guid, else its link, else its title and date, within its feed."""
    identity = (
        _get(entry, "id")
        or _get(entry, "link")
        or f"{_get(entry, 'title', '')}|{_get(entry, 'published', '')}"
    )
    return hashlib.sha256(f"{feed_url}\x00{identity}".encode()).hexdigest()[:32]


#: A date this far past the fetch time is treated as wrong (clock skew allowance).
FUTURE_SKEW = timedelta(minutes=15)
MAX_SUMMARY_CHARS = 5_000
MAX_CONTENT_CHARS = 100_000


@dataclass(frozen=True)
class FeedContext:
    """What an entry inherits from its feed."""

    url: str
    title: str = ""
    site: str = ""
    language: str = ""
    language_detected: bool = False  # ``language`` is a guess from the entries' text
    base: str = ""  # relative links are resolved against this (the feed URL when empty)

    @functools.cached_property
    def source(self) -> Source:
        """The same for every entry of the feed: built once per poll."""
        return Source(
            feed_url=self.url,
            feed_title=plain_text(self.title),
            site=self.site,
            host=urlsplit(self.url).hostname or "",
        )


def feed_context(
    url: str, title: str, site: str, language: str, entries: list[Any], base: str = ""
) -> FeedContext:
    """What entries inherit from their feed; a feed without a language gets a guessed one.

    One guess per poll, from the first entries' titles and summaries: the items of one
    feed almost always share a language, and one call costs far less than one per item.
    """
    base = base or url
    site = _absolute(site, base) if site else ""
    if language.strip():
        return FeedContext(url, title, site, language, base=base)
    sample = " ".join(f"{_get(e, 'title') or ''}. {str(_get(e, 'summary') or '')[:120]}" for e in entries[:3])
    guess = detect_language(plain_text(sample))
    return FeedContext(url, title, site, guess, language_detected=bool(guess), base=base)


def _entry_time(entry: Any, key: str) -> datetime | None:
    """The entry's ``published``/``updated`` date in UTC, if readable.

    feedparser's own parse first; a date it could not read gets one more try as a localized
    RFC 822 date. dict.get, not FeedParserDict.get: the latter maps a missing updated_parsed
    to published_parsed (with a DeprecationWarning), which would blur the two dates.
    """
    parsed = _get(entry, f"{key}_parsed")
    if not parsed:
        raw = _get(entry, key)
        return parse_localized_rfc822(raw) if isinstance(raw, str) and raw else None
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    except (OverflowError, ValueError, OSError, TypeError):
        return None


def _language(entry: Any, feed_language: str) -> str:
    for key in ("title_detail", "summary_detail"):
        detail = _get(entry, key) or {}
        if detail.get("language"):
            return str(detail["language"]).strip().lower()
    for content in _get(entry, "content") or ():
        if content.get("language"):
            return str(content["language"]).strip().lower()
    return feed_language.strip().lower()


def _content_html(entry: Any, base: str) -> str:
    """Sanitized rich content; its relative links resolve against its xml:base, else ``base``."""
    for content in _get(entry, "content") or ():
        if "html" in str(content.get("type", "")) and content.get("value"):
            return sanitize_html(str(content["value"]), _absolute(str(content.get("base") or ""), base))
    detail = _get(entry, "summary_detail") or {}
    if "html" in str(detail.get("type", "")) and _get(entry, "summary"):
        return sanitize_html(str(entry["summary"]), _absolute(str(detail.get("base") or ""), base))
    return ""


def sanitize_html(value: str, base: str = "") -> str:
    """Untrusted feed HTML made safe to render: no scripts, styles, handlers or javascript: links.

    Relative ``href``/``src`` are made absolute against ``base`` (the entry's link or the
    feed URL), so the HTML still works when shown in an email or a chat message.
    """

    def absolute(_tag: str, attribute: str, value: str) -> str | None:
        if attribute in ("href", "src") and base and "://" not in value[:12]:
            return urljoin(base, value)
        return value

    return nh3.clean(
        value[:MAX_CONTENT_CHARS], link_rel="noopener noreferrer nofollow", attribute_filter=absolute
    )


def _names(entry: Any) -> tuple[str, ...]:
    names = []
    for author in _get(entry, "authors") or ():
        name = plain_text(str(author.get("name") or author.get("email") or ""))
        if name and name not in names:
            names.append(name)
    if not names and _get(entry, "author"):
        names.append(plain_text(str(entry["author"])))
    return tuple(names)


def _categories(entry: Any) -> tuple[str, ...]:
    terms: list[str] = []
    for tag in _get(entry, "tags") or ():
        term = plain_text(str(tag.get("label") or tag.get("term") or ""))
        if term and term not in terms:
            terms.append(term)
    return tuple(terms)


def _enclosures(entry: Any, base: str) -> tuple[Enclosure, ...]:
    out = []
    for enc in entry.get("enclosures") or ():  # derived by FeedParserDict from rel=enclosure links
        url = canonical_url(str(enc.get("href") or enc.get("url") or ""), base)
        if not url:
            continue
        length = str(enc.get("length") or "").strip()
        out.append(
            Enclosure(
                url=url, type=str(enc.get("type") or ""), length=int(length) if length.isdigit() else None
            )
        )
    return tuple(out)


def _absolute(link: str, base: str) -> str:
    """The entry's link made absolute; only http(s) survives. A feed is untrusted: a
    ``javascript:`` or ``data:`` link would otherwise reach an email's ``href``, a chat
    message's Markdown link, or a page of the web app."""
    if not link:
        return base
    absolute = link if link.lower().startswith(("http://", "https://")) else urljoin(base, link)
    return absolute if absolute.lower().startswith(("http://", "https://")) else ""


def normalize_entry(entry: Any, feed: FeedContext, fetched_at: datetime) -> Item:
    """One feedparser entry as a contract Item (pure: same input, same output)."""
    summary = str(_get(entry, "summary") or "")
    if not summary and _get(entry, "content"):
        summary = str(entry["content"][0].get("value", ""))
    published = _entry_time(entry, "published")
    updated = _entry_time(entry, "updated")
    flags = []
    when = published or updated
    if when is None:
        when = fetched_at
        flags.append("date_missing")
    elif when > fetched_at + FUTURE_SKEW:
        when = fetched_at
        flags.append("date_in_future")
    base = feed.base or feed.url
    raw_link = str(_get(entry, "link") or "").strip()
    link = _absolute(raw_link, base) if raw_link else ""
    title = plain_text(str(_get(entry, "title") or ""))
    plain_summary = plain_text(summary)[:MAX_SUMMARY_CHARS]
    language = _language(entry, "")
    if not language and feed.language:
        language = feed.language.strip().lower()
        if feed.language_detected:
            flags.append("language_detected")
    return Item(
        item_id=item_id_for(feed.url, entry),
        url=link,
        canonical_url=canonical_url(link),
        title=title,
        summary=plain_summary,
        content_html=_content_html(entry, link or base),
        published=when,
        updated=updated,
        fetched_at=fetched_at,
        guid=str(_get(entry, "id") or ""),
        language=language,
        authors=_names(entry),
        categories=_categories(entry),
        enclosures=_enclosures(entry, base),
        flags=tuple(flags),
        source=feed.source,
    )
