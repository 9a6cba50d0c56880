"""Alert and digest messages: the view of each match, and its text, Markdown and HTML forms.

The view (pure) carries what a person needs to judge an alert at a glance: topic, title,
source, time, link, why it matched (terms and the highlighted sentence) and the other
outlets that reported the same story. Jinja2 templates (``templates/``) turn it into each
channel's format; HTML is autoescaped, Markdown is escaped by the ``md`` filter.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from functools import cache

import jinja2
from markupsafe import Markup

from newswatch.notifier.model import AlertView, Report
from newswatch.shared.contract import Match

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~-])")


def view(match: Match, also: list[Report]) -> AlertView:
    item, why = match.item, match.reason
    published = item.published or item.fetched_at
    return AlertView(
        topic=match.topic_id,
        query=match.query,
        title=item.title or "(untitled)",
        url=item.url,
        source=item.source.feed_title or item.source.host,
        published=published.strftime("%Y-%m-%d %H:%M UTC"),
        terms=list(why.terms.items()),
        snippet_text=_marked(why.snippet, why.highlights, lambda s: s, lambda s: f"*{s}*"),
        snippet_md=_marked(why.snippet, why.highlights, md_escape, lambda s: f"**{md_escape(s)}**"),
        # Escaped here, piece by piece, so the template inserts it as it is.
        snippet_html=Markup(  # noqa: S704 - every piece is escaped by _marked
            _marked(why.snippet, why.highlights, html.escape, lambda s: f"<mark>{html.escape(s)}</mark>")
        ),
        also=also,
    )


def _marked(
    snippet: str,
    spans: list[tuple[int, int]],
    plain: Callable[[str], str],
    hit: Callable[[str], str],
) -> str:
    """The snippet with each highlighted span wrapped by ``hit`` and the rest by ``plain``."""
    out: list[str] = []
    at = 0
    for start, end in sorted(spans):
        if start < at or end > len(snippet):
            continue  # overlapping or out of range: a bad reason never breaks a message
        out.append(plain(snippet[at:start]))
        out.append(hit(snippet[start:end]))
        at = end
    out.append(plain(snippet[at:]))
    return "".join(out)


def md_escape(value: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", value)


def web_url(value: str) -> str:
    """``value`` if it is an http(s) URL, else "": a link in a message never runs script
    (``javascript:``) or carries data, whatever an item or a producer put in it."""
    return value if value.lower().startswith(("http://", "https://")) else ""


def md_url(value: str) -> str:
    """A URL for a Markdown link target: http(s) only, with what could end the target escaped."""
    return (
        web_url(value)
        .replace("(", "%28")
        .replace(")", "%29")
        .replace(" ", "%20")
        .replace("<", "%3C")
        .replace(">", "%3E")
    )


def subject(views: list[AlertView], digest: bool) -> str:
    if not digest and views:
        return f"[{views[0].topic}] {views[0].title}"
    topics = sorted({v.topic for v in views})
    return f"newswatch digest: {len(views)} alert{'s' if len(views) != 1 else ''} ({', '.join(topics)})"


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("newswatch.notifier", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,  # a template typo fails the test suite, not a send
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["web_url"] = web_url
    env.filters["md_url"] = md_url
    return env


def render(
    views: list[AlertView], subscription_id: str, form: str, unsubscribe_url: str | None = None
) -> str:
    """The message in ``form`` (text, markdown or html); an email carries its unsubscribe link."""
    name = {"text": "message.txt.j2", "markdown": "message.md.j2", "html": "message.html.j2"}[form]
    return (
        _environment()
        .get_template(name)
        .render(alerts=views, subscription=subscription_id, unsubscribe_url=unsubscribe_url)
    )
