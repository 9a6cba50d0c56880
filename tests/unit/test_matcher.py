"""The query language: parsing, errors, aliases, evaluation, reasons, presearch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newswatch.matcher.aliases import AliasTable, build_table, load_sets, starter_sets
from newswatch.matcher.document import Document
from newswatch.matcher.errors import AliasError, QueryError
from newswatch.matcher.parser import parse
from newswatch.matcher.presearch import KeyStats
from newswatch.matcher.syntax import And, Near, Node, Not, Or, Phrase, Prefix, Word, to_text
from newswatch.matcher.text import WORD, doc_forms
from newswatch.matcher.topics import Compiler, TopicSet
from tests.support import oracle

README = (Path(__file__).parents[2] / "docs" / "queries.md").read_text(encoding="utf-8")
STARTER = Compiler(build_table())


def reason(query: str, title: str, text: str = "", language: str = "en", compiler: Compiler = STARTER):  # type: ignore[no-untyped-def]
    topic = compiler.compile("t", query)
    return compiler.explain(topic, Document(title, text, language))


def matches(query: str, title: str, text: str = "", language: str = "en") -> bool:
    return reason(query, title, text, language) is not None


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
    assert doc_forms(a) & doc_forms(b)  # English, as for an item of unknown language


@pytest.mark.parametrize(
    ("a", "b"), [("plan", "plane"), ("war", "ward"), ("north", "south"), ("Korea", "core")]
)
def test_word_forms_stay_apart(a: str, b: str) -> None:
    assert not doc_forms(a) & doc_forms(b)


def test_items_are_stemmed_in_their_language() -> None:
    assert doc_forms("Truppen", "german") & doc_forms("Truppe", "german")
    assert matches("Truppe", "Russische Truppen an der Grenze", language="de")


# --- the seed scenarios of the matcher issue ------------------------------------------------


def test_seed_scenario_plain_words_with_stemming_and_aliases() -> None:
    why = reason(
        "North Korea Ukraine deployment",
        "NATO alarmed",
        "Officials confirmed the deployment of North Korean troops in Ukraine. Other news.",
    )
    assert why is not None
    assert why.terms == {
        "North Korea": ["North", "Korean"],
        "Ukraine": ["Ukraine"],
        "deployment": ["deployment"],
    }
    assert why.snippet == "Officials confirmed the deployment of North Korean troops in Ukraine."
    assert [why.snippet[s:e] for s, e in why.highlights] == ["deployment", "North Korean", "Ukraine"]
    assert 0 < why.score <= 0.5  # every term found, none in the title


def test_seed_scenario_exact_phrase() -> None:
    assert not matches('"North Korea"', "Troops from the north of Korea")
    assert matches('"North Korea"', "North Korea fires a missile")


def test_seed_scenario_near_through_aliases_and_stemming() -> None:
    why = reason("(North Korea) NEAR/5 (troops OR soldiers)", "DPRK soldiers near Kursk")
    assert why is not None and why.terms == {"North Korea": ["DPRK"], "soldiers": ["soldiers"]}
    assert matches("(North Korea) NEAR/5 (troops OR soldiers)", "Pyongyang sends more troops")
    assert not matches("(North Korea) NEAR/5 (troops OR soldiers)", "DPRK " + "word " * 6 + "soldiers")


# --- the README's examples, evaluated as documented --------------------------------------------

_EXAMPLES = re.findall(
    r"^\| `([^`]+)` \| ([^|]+) \| ([^|]+) \|$",
    README.split("Examples (each row")[1].split("\n\n", 2)[1],
    re.M,
)


def _item(cell: str) -> tuple[str, str, str]:
    """A README cell as (title, text, language): '(a German item) …', '… (in the text only)'."""
    cell = cell.strip()
    language = "en"
    for marker, code in (("(a German item) ", "de"), ("(an English item) ", "en")):
        if cell.startswith(marker):
            cell, language = cell[len(marker) :], code
    if cell.endswith(" (in the text only)"):
        return "News", cell.removesuffix(" (in the text only)"), language
    return cell, "", language


def test_the_readme_has_examples() -> None:
    assert len(_EXAMPLES) >= 10


@pytest.mark.parametrize(("query", "positive", "negative"), _EXAMPLES)
def test_every_readme_example_evaluates_as_documented(query: str, positive: str, negative: str) -> None:
    tree = parse(query, STARTER.aliases)
    assert parse(to_text(tree), STARTER.aliases) == tree  # printing round-trips with aliases too
    assert matches(query, *_item(positive)), f"{query} should match {positive!r}"
    assert not matches(query, *_item(negative)), f"{query} should not match {negative!r}"


# --- parsing ------------------------------------------------------------------------------------


def test_precedence_and_structure() -> None:
    assert parse("a b OR c") == Or((And((Word("a"), Word("b"))), Word("c")))
    assert parse("a AND b OR NOT c") == Or((And((Word("a"), Word("b"))), Not(Word("c"))))
    assert parse("a NEAR/3 b c") == And((Near(Word("a"), Word("b"), 3), Word("c")))
    assert parse('title:(x OR "y z") -wor*') == And(
        (Or((Word("x", "title"), Phrase(("y", "z"), "title"))), Not(Prefix("wor")))
    )
    assert parse("Jong-un") == Phrase(("Jong", "un"))
    assert parse("and or not") == And((Word("and"), Word("or"), Word("not")))  # lower-case: words
    assert parse("lang:de x") == And((Word("de", "lang"), Word("x")))


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("(North Korea NEAR/5 troops", 0, "')' expected to close the group"),
        ("Korea OR", 8, "expected a word"),
        ("Korea )", 6, "')' without a matching '('"),
        ('say "hello', 4, "closing quote expected"),
        ("Korea NEAR troops", 10, "NEAR needs a distance"),
        ("Korea NEAR/500 troops", 6, "between 1 and 100"),
        ("a NEAR/3 (b c)", 2, "NEAR/3 needs words, phrases"),
        ("a NEAR/3 -b", 2, "needs words"),
        ("colour:red", 0, "unknown field 'colour'"),
        ("title:(text:x)", 7, "field text: inside title:"),
        ("de*", 0, "at least 3 letters"),
        ("de*ploy", 2, "only allowed at the end"),
        ("   ", 3, "expected a query"),
        ('""', 0, "empty phrase"),
        ('lang:"en gb"', 5, "lang: takes a language code"),
    ],
)
def test_errors_say_where_and_what_was_expected(query: str, position: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert info.value.position == position, str(info.value)
    assert message in str(info.value)


# Random trees over a small vocabulary: printing then parsing gives the same tree.
_WORDS = st.sampled_from(["korea", "troops", "ukraine", "deploy", "sport", "flood", "kursk", "border"])
_FIELDS = st.sampled_from([None, None, None, "title", "text", "source", "author"])


def _tree_strategy(words: st.SearchStrategy[str], prefix: int) -> st.SearchStrategy[Node]:
    """Random query trees over ``words`` (a wildcard takes a word's first ``prefix`` letters)."""
    positional = st.recursive(
        st.one_of(
            st.builds(Word, words, _FIELDS),
            st.builds(Prefix, words.map(lambda w: w[:prefix]), _FIELDS),
            st.builds(Phrase, st.lists(words, min_size=1, max_size=3).map(tuple), _FIELDS),
        ),
        lambda inner: st.one_of(
            st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
            st.builds(Near, inner, inner, st.integers(1, 8), st.booleans()),
        ),
        max_leaves=6,
    )
    return st.recursive(
        positional,
        lambda inner: st.one_of(
            st.builds(Not, inner),
            st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
            st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        ),
        max_leaves=8,
    )


def _within_limits(tree: Node) -> bool:
    """Whether the parser takes the tree's text (a tree past a query limit is refused by design)."""
    try:
        parse(to_text(tree))
    except QueryError as exc:
        return "(MAX_" not in str(exc)
    return True


_trees = _tree_strategy(_WORDS, 4).filter(_within_limits)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_printing_and_reparsing_gives_the_same_tree(tree: Node) -> None:
    assert parse(to_text(tree)) == tree


# --- check, explain and presearch == the brute-force oracle -----------------------------------

_SMALL_ALIASES = AliasTable([["north korea", "dprk", "pyongyang"], ["kursk", "kursk region"]])
_DOC_WORDS = st.sampled_from(
    ["korea", "Korea", "KOREA", "korean", "korea's", "Korea’s", "troops", "troop", "ukraine", "deployed",
     "deploying", "sport", "floods", "kursk", "region", "border", "north", "North", "dprk", "the", "of",
     "Pyongyang", "tro"]
)  # fmt: skip
_TREE_WORDS = st.sampled_from(["korea", "korea's", "troops", "ukraine", "deploy", "kursk", "border", "dprk"])
_oracle_trees = _tree_strategy(_TREE_WORDS, 3).filter(_within_limits)
_fields = st.lists(_DOC_WORDS, max_size=4).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_oracle_trees, min_size=1, max_size=25),
    st.lists(
        st.tuples(
            st.lists(_DOC_WORDS, max_size=8).map(" ".join),
            st.lists(_DOC_WORDS, max_size=20).map(" ".join),
            _fields,
            _fields,
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_check_explain_and_presearch_agree_with_the_brute_force_oracle(
    trees: list[Node], docs: list[tuple[str, str, str, str]]
) -> None:
    compiler = Compiler(_SMALL_ALIASES, ("en",))
    topics = {f"t{i}": compiler.compile(f"t{i}", to_text(tree)) for i, tree in enumerate(trees)}
    topic_set = TopicSet(compiler).updated(topics)
    for title, text, source, author in docs:
        doc = Document(title, text, "en", source, author)
        reference = oracle.item(title, text, "en", source, author)
        expected = {t.id for t in topics.values() if oracle.matches(t.tree, reference, compiler.algorithms)}
        for topic in topics.values():
            assert topic.plan.check(doc) == (topic.id in expected), (topic.query, title, text, source, author)
        found, candidates = topic_set.matches(doc)  # presearch, then check and explain
        assert {t.id for t, _ in found} == expected
        assert candidates <= len(topics)
        every_word = {w for field in (title, text, source, author) for w in field.split()}
        for _topic, why in found:
            assert all(set(words) <= every_word for words in why.terms.values()), why


@pytest.mark.parametrize("operator", ["NEAR", "ONEAR"])
def test_near_boundaries_every_distance_gap_and_order(operator: str) -> None:
    """``a NEAR/n b``: at most n words apart, adjacent words being 1 apart; ONEAR: a first."""
    compiler = Compiler(AliasTable(), ("en",))
    for distance in range(1, 5):
        topic = compiler.compile("t", f"troops {operator}/{distance} border")
        for apart in range(1, 7):
            filler = " ".join(["word"] * (apart - 1))
            for first, second in (("troops", "border"), ("border", "troops")):
                title = " ".join(w for w in (first, filler, second) if w)
                documented = apart <= distance and (operator == "NEAR" or first == "troops")
                reference = oracle.matches(topic.tree, oracle.item(title), compiler.algorithms)
                assert topic.plan.check(Document(title, "", "en")) == documented == reference, title


def test_a_phrase_with_a_possessive_is_found_through_presearch() -> None:
    """An item's keys hold its words as written too, not only their normalized forms."""
    topic_set = TopicSet(STARTER).updated({"t": STARTER.compile("t", '"Korea\'s troops"')})
    found, _ = topic_set.matches(Document("Korea's troops advance", "", "en"))
    assert [t.id for t, _ in found] == ["t"]


def test_the_lexicons_start_afresh_when_full_and_documents_keep_theirs() -> None:
    """One bound for a thread's lexicons, every language together: items guessed to be in
    14 languages once made 14 caches of the same words grow (the soak's "growth")."""
    from prometheus_client import CollectorRegistry

    from newswatch.matcher import text
    from newswatch.matcher.metrics import MatcherMetrics

    registry = CollectorRegistry()
    metrics = MatcherMetrics(registry)
    mine = text._thread_lexicons()
    first = text.lexicon_for("english")
    assert registry.get_sample_value("newswatch_matcher_lexicon_words") == text.lexicon_words() >= len(first)
    limit, mine.limit = mine.limit, mine.words + 6
    try:
        german = Document("xqzvw1 xqzvw2", "xqzvw3 xqzvw4", "de")  # 4 new words, German cache
        old = Document("Kursk troops deploying", "xqzvw5 xqzvw6", "en")  # 2 more: past the bound
        assert mine.words >= mine.limit and old.lexicon is first is not german.lexicon
        resets = text.lexicon_resets()
        new = Document("Kursk troops deploying", "", "en")
        assert text.lexicon_resets() == resets + 1 and new.lexicon is not old.lexicon
        assert mine.words == 3 and list(mine.current) == ["english"]  # every language started afresh
        topic = STARTER.compile("t", "deploy* NEAR/2 troop")
        assert topic.plan.explain(old) == topic.plan.explain(new) is not None  # the old one still works
        metrics.count_lexicon_resets()
        assert registry.get_sample_value("newswatch_matcher_lexicon_resets_total") == 1
    finally:
        mine.limit = limit


def test_presearch_skips_topics_whose_words_are_absent_and_flags_pure_negations() -> None:
    compiler = Compiler(AliasTable(), ("en",))
    topic_set = TopicSet(compiler).updated(
        {
            "nk": compiler.compile("nk", "Korea troops"),
            "heat": compiler.compile("heat", "heatwave"),
            "not": compiler.compile("not", "NOT sport"),
            "wild": compiler.compile("wild", "deploy*"),
        }
    )
    assert topic_set.unindexed == 1 and not topic_set.get("not").indexed  # type: ignore[union-attr]
    doc = Document("Troops deploying near Korea", "", "en")
    assert sorted(t.id for t in topic_set.candidates(doc)) == ["nk", "not", "wild"]
    found, candidates = topic_set.matches(doc)
    assert sorted(t.id for t, _ in found) == ["nk", "not", "wild"] and candidates == 3


# --- aliases ------------------------------------------------------------------------------------


def test_alias_tables_validate_and_merge(tmp_path: Path) -> None:
    with pytest.raises(AliasError, match="at least two different names"):
        AliasTable([["Hamas"]])
    with pytest.raises(AliasError, match="in two alias sets"):
        AliasTable([["a b", "c"], ["c", "d"]])
    bad = tmp_path / "bad.yaml"
    bad.write_text("north: korea\n")
    with pytest.raises(AliasError, match=r"bad\.yaml: expected a list of alias sets"):
        load_sets(bad)
    extra = tmp_path / "extra.yaml"
    extra.write_text("- [DPRK, Hermit Kingdom]\n")
    table = build_table([["Kursk", "Kurskaya"]], [extra])
    assert ("Hermit", "Kingdom") in (table.lookup(["north", "korea"]) or ())  # merged with the starter set
    assert table.lookup(["KURSKAYA"]) is not None
    assert len(starter_sets()) >= 30


def test_topic_set_updates_are_new_objects() -> None:
    compiler = Compiler(AliasTable(), ("en",))
    empty = TopicSet(compiler)
    one = empty.updated({"a": compiler.compile("a", "Korea")})
    assert len(empty) == 0 and len(one) == 1
    assert one.updated({"a": compiler.compile("a", "Korea")}) is one  # same topic: no swap
    assert len(one.updated({"a": None})) == 0
    assert one.updated({"missing": None}) is one


def test_long_snippet_is_cut_and_highlights_stay_inside() -> None:
    why = reason("Korea", "Title", "Korea " + "word " * 200)
    assert why is not None and len(why.snippet) <= 300 and why.snippet.endswith("…")
    assert why.highlights == [(0, 5)]


def test_replanned_index_uses_the_rarest_required_word_seen_in_items() -> None:
    compiler = Compiler(AliasTable(), ("en",))
    stats = KeyStats(every=1)
    topic_set = TopicSet(compiler, stats=stats).updated({"t": compiler.compile("t", "zebra ministers")})
    assert "minist" in topic_set.index.keys  # no statistics: the longer word
    for i in range(300):  # "zebra" is in every item, "ministers" in few
        topic_set.candidates(Document(f"zebra story {i}", "ministers meet" if i % 50 == 0 else "", "en"))
    replanned = topic_set.replanned()
    assert "zebra" not in replanned.index.keys and "minist" in replanned.index.keys
    doc = Document("Zebra ministers resign", "", "en")
    assert (
        [t.id for t, _ in replanned.matches(doc)[0]] == ["t"] == [t.id for t, _ in topic_set.matches(doc)[0]]
    )
    before = stats.items
    stats.window = 100
    stats.observe({"x"})
    assert stats.items < before  # halved: the sample decays instead of growing forever


@pytest.mark.parametrize(
    ("text", "snippet"),
    [
        ("Intro. Korea troops met... Korea again?! Then rest", "Korea troops met..."),  # first of the largest
        ("No marks here but Korea and Korea", "No marks here but Korea and Korea"),
        ("...Korea leads. Quiet", "Korea leads."),  # a run of marks at the very start
        ("Some news! Then Korea, Korea and Korea at the end", "Then Korea, Korea and Korea at the end"),
        ("Korea. Korea! Korea? Korea", "Korea."),  # one hit each: the first sentence
    ],
)
def test_the_snippet_is_the_sentence_with_most_hits(text: str, snippet: str) -> None:
    why = reason("Korea", "Title", text)
    assert why is not None and why.snippet == snippet
    assert all(why.snippet[s:e] == "Korea" for s, e in why.highlights)


_RAW_TEXT = st.text(alphabet="abc XYZ .,'’-!?\n\tİIıßẞǅΣσς1_é\u0301", max_size=40)


@settings(max_examples=300, deadline=None)
@given(_RAW_TEXT, _RAW_TEXT, _RAW_TEXT)
def test_a_documents_words_are_the_regex_words_lower_cased(title: str, text: str, source: str) -> None:
    """The build lower-cases a field before splitting it (one pass); the words, the lines and
    the words as written must be those of splitting first and lower-casing each word, also
    where lower-casing makes a character two (``İ``) and the offsets would otherwise shift."""
    doc = Document(title, text, "en", source)
    for field_id, value in enumerate((title, text, source)):
        words = WORD.findall(value)
        assert doc.lines[field_id] == f" {' '.join(w.lower() for w in words)} "
        assert [doc.written((field_id << 20) + i) for i in range(len(words))] == words
    assert doc.lines[4] == doc.lines[0] + "\n" + doc.lines[1]


def test_capital_greek_matches_lower_case_queries_when_compiled() -> None:
    """mypyc's own ``str.lower`` gave ``ΑΓΩΝΑΣ`` → ``αγωνασ`` (CPython: ``αγωνας``), so the
    compiled matcher never matched a capital Greek word ending in sigma; ``text.lower`` is
    CPython's."""
    for query in ('"αγωνας"', "αγωνας", "αγων*"):
        for language in ("el", "en"):
            assert matches(query, "ΑΓΩΝΑΣ ΔΡΟΜΟΥ", language=language), (query, language)
    assert matches('"ας β"', "ΑΣ.Β", language="el")  # the sigma ends its word, whatever follows
