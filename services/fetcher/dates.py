"""Dates feedparser cannot read on its own: RFC 822 dates with localized day and month names.

Real news feeds write ``Seg, 24 Set 2018 19:42:40 -0300`` (Portuguese) or ``mer, 16 nov
2022 00:38:15 +0100`` (Italian). Translating the month name to English and dropping the
weekday lets the standard RFC 822 parser read them. Used as a fallback when feedparser
leaves a date unparsed (not registered with feedparser: a registered handler runs first for
every date of every feed), and for JSON Feed dates, which are sometimes RFC 822.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_MONTHS = {
    "jan": ("jan", "janv", "janvier", "januar", "janeiro", "gennaio", "enero", "januari", "ene", "gen"),
    "feb": (
        "fev",
        "fév",
        "févr",
        "fevereiro",
        "février",
        "februar",
        "febbraio",
        "febrero",
        "februari",
        "feb",
    ),
    "mar": ("mär", "märz", "março", "mars", "marzo", "maart", "mrz"),
    "apr": ("avr", "avril", "abr", "abril", "aprile", "april"),
    "may": ("mai", "maio", "mag", "maggio", "mayo", "mei"),
    "jun": ("juin", "juni", "junho", "giu", "giugno", "junio"),
    "jul": ("juil", "juillet", "juli", "julho", "lug", "luglio", "julio"),
    "aug": ("ago", "agosto", "août", "aou", "aoû", "augustus"),
    "sep": ("set", "setembro", "settembre", "sept", "septembre", "septiembre", "sep"),
    "oct": ("okt", "oktober", "out", "outubro", "ottobre", "octobre", "octubre", "ott"),
    "nov": ("novembro", "novembre", "noviembre", "november"),
    "dec": ("dez", "dezember", "dezembro", "dic", "dicembre", "déc", "décembre", "diciembre", "december"),
}
_TO_ENGLISH = {name: english for english, names in _MONTHS.items() for name in names}
_LOCALIZED = re.compile(
    r"^\s*(?:[^\W\d]+\.?,?\s+)?(\d{1,2})\.?\s+([^\W\d]+)\.?\s+(\d{4})\s+(\d{1,2}:\d{2}(?::\d{2})?)\s*(.*)$"
)


def parse_localized_rfc822(value: str) -> datetime | None:
    """``[weekday,] DD month YYYY HH:MM[:SS] [zone]`` with the month in a European language."""
    match = _LOCALIZED.match(value)
    if not match:
        return None
    day, month, year, clock, zone = match.groups()
    english = _TO_ENGLISH.get(month.lower(), month.lower()[:3])
    if english not in _MONTHS:
        return None
    try:
        parsed = parsedate_to_datetime(f"{day} {english.title()} {year} {clock} {zone or '+0000'}")
    except (TypeError, ValueError, IndexError):
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def parse_any_date(value: object) -> datetime | None:
    """ISO 8601 / RFC 3339, RFC 822, or localized RFC 822; None when unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return parse_localized_rfc822(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
