from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newswatch.matcher.errors import QueryError
from newswatch.matcher.evaluate import Document, evaluate
from newswatch.matcher.query import compile_query
from newswatch.matcher.text import word_forms
from newswatch.matcher.topics import TopicSet
from newswatch.shared.contract import Item, Source

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def doc(title: str, summary: str = "") -> Document:
    item = Item(
        item_id="0123456789abcdef",
        title=title,
        summary=summary,
        fetched_at=NOW,
        source=Source(feed_url="http://127.0.0.1/f"),
    )
    return Document.from_item(item)


def matches(query: str, title: str, summary: str = "") -> bool:
    return evaluate(compile_query(query), doc(title, summary)) is not None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("deployment", "deployed"),
        ("Korea", "Korean"),
        ("Ukraine", "Ukrainian"),
        ("Russia", "Russian"),
        ("troops", "troop"),
        ("Iran", "Iranian"),
        ("Korea's", "Korea"),
    ],
)
def test_word_forms_meet(a: str, b: str) -> None:
    assert word_forms(a) & word_forms(b)


@pytest.mark.parametrize(
    ("a", "b"), [("plan", "plane"), ("war", "ward"), ("north", "south"), ("Korea", "core")]
)
def test_word_forms_stay_apart(a: str, b: str) -> None:
    assert not word_forms(a) & word_forms(b)


def test_seed_scenario_matches_with_reason() -> None:
    reason = evaluate(
        compile_query("North Korea Ukraine deployment"),
        doc(
            "NATO alarmed",
            "Officials confirmed the deployment of North Korean troops in Ukraine. Other news follows.",
        ),
    )
    assert reason is not None
    assert reason.terms == {
        "North": ["North"],
        "Korea": ["Korean"],
        "Ukraine": ["Ukraine"],
        "deployment": ["deployment"],
    }
    assert reason.snippet == "Officials confirmed the deployment of North Korean troops in Ukraine."


def test_every_word_is_required_case_insensitively() -> None:
    assert matches("north korea ukraine DEPLOYMENT", "North Korean troops deployed to Ukraine")
    assert not matches("North Korea Ukraine deployment", "North Korean troops in Ukraine")
    assert not matches("volcano eruption Iceland", "North Korean troops deployed to Ukraine")


def test_title_and_summary_both_count() -> None:
    assert matches(
        "heatwave Europe", "Heatwave breaks records", "Temperatures soared across southern Europe."
    )


def test_long_snippet_is_cut() -> None:
    long_sentence = "Korea " + "word " * 200
    reason = evaluate(compile_query("Korea"), doc("Title", long_sentence))
    assert reason is not None and len(reason.snippet) <= 300 and reason.snippet.endswith("…")


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ('"North Korea"', 0, "'\"' is query syntax"),
        ("Korea OR Ukraine", 6, "operator OR"),
        ("Korea NEAR/5 troops", 6, "operator NEAR/5"),
        ("title:Korea", 5, "':' is query syntax"),
        ("Korea -South", 6, "negation"),
        ("   ", 0, "expected at least one word"),
        ("deploy*", 6, "'*' is query syntax"),
    ],
)
def test_unsupported_syntax_is_refused_with_position(query: str, position: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_query(query)
    assert info.value.position == position
    assert message in str(info.value)


def test_topic_set_changes_are_new_objects_and_keep_old_on_error() -> None:
    empty = TopicSet()
    one = empty.with_topic("a", "North Korea")
    assert len(empty) == 0 and len(one) == 1
    assert one.with_topic("a", "North  Korea") is one  # same compiled query: no swap
    with pytest.raises(QueryError):
        one.with_topic("a", "(broken")
    assert one.get("a") is not None and one.get("a").query.source == "North Korea"  # type: ignore[union-attr]
    assert len(one.without("a")) == 0
    assert one.without("missing") is one
