"""Fuzzing the query language: any text up to 4 KB either compiles within the limits or is
refused with a QueryError (the API's 422: position and what is wrong); never another
exception, never a recursion error. A compiled topic stays within the matcher's evaluation
budget on a 5,000-character item made of the query's own words (its worst case: every word
a hit). The time is thread CPU time, the budget ``matcher.topic_budget``; the limits keep the
worst case far below it (a few ms), which is what this checks. The best of three runs counts:
a cost that repeats is the input's, a one-off (a garbage collection, first-use caches; 95 ms
once on a loaded machine for a query that takes 2 ms) is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newswatch.matcher.aliases import AliasTable, starter_sets
from newswatch.matcher.document import Document
from newswatch.matcher.errors import QueryError
from newswatch.matcher.parser import MAX_QUERY_CHARS
from newswatch.matcher.text import tokenize
from newswatch.matcher.topics import Compiler
from newswatch.shared.config import MatcherSettings

COMPILER = Compiler(AliasTable(starter_sets()), ("en", "de"))
BUDGET = MatcherSettings().topic_budget
TOKENS = [
    "the", "korea", "north", "ukraine", "troops", "deploy*", "title:", "text:", "source:", "lang:",
    "AND", "OR", "NOT", "-", "(", ")", '"', '"north korea"', "NEAR/1", "NEAR/100", "ONEAR/5", "NEAR",
    "*", "a*", ":", "NEAR/0", "NEAR/101", "Jong-un", "U.S.", "КНДР", "dprk", "pyongyang",
]  # fmt: skip
queries = st.one_of(
    st.text(max_size=MAX_QUERY_CHARS + 10),
    st.lists(st.sampled_from(TOKENS), max_size=700).map(" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=700).map("".join),
)


def _cpu(func: Callable[[Document], object], doc: Document) -> float:
    started = time.thread_time()
    func(doc)
    return time.thread_time() - started


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries)
def test_any_text_compiles_within_limits_or_is_refused_with_a_position(query: str) -> None:
    try:
        topic = COMPILER.compile("fuzz", query)
    except QueryError as exc:
        refused: QueryError | None = exc
    else:
        refused = None
    if refused is not None:
        assert 0 <= refused.position <= max(len(query), 80), refused
        return
    words = [t.text for t in tokenize(query)] or ["x"]
    text = " ".join(words[i % len(words)] for i in range(5000))[:5000]
    doc = Document(" ".join(words[:20]), text, "en")
    spent = min(_cpu(topic.plan.explain, doc) for _ in range(3))
    assert spent < BUDGET, f"{spent * 1000:.1f} ms for {query!r}"
