"""Topic queries per category against the labelled news sets: precision and recall, reported.

The queries below were written from what each category is about, before looking at the
results, and are not tuned to them: the numbers are a report (printed), not a threshold.
What is asserted is what must hold on any data: every item is evaluated, presearch finds
exactly what brute-force evaluation finds, and every topic matches something.
"""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from newswatch.matcher.aliases import build_table
from newswatch.matcher.document import Document
from newswatch.matcher.evaluate import match
from newswatch.matcher.topics import Compiler, TopicSet
from tests.support.corpus import corpus_dir

pytestmark = pytest.mark.corpus

BUSINESS = (
    "shares OR profit* OR market* OR economy OR economic OR bank* OR investor* OR firm OR company "
    'OR sales OR prices OR inflation OR "interest rates" OR stock* OR oil'
)
SPORT = (
    "match OR cup OR champion* OR league OR coach OR team OR player* OR tournament OR goal* OR "
    "olympic* OR season OR victory OR football OR tennis OR cricket OR rugby OR baseball OR game"
)
TECH = (
    "software OR computer* OR internet OR online OR technology OR mobile OR phone* OR digital OR "
    "web OR broadband OR gadget* OR microsoft OR google OR users OR network*"
)
QUERIES = {
    "bbc": {
        "business": BUSINESS,
        "entertainment": "film* OR music OR singer OR album OR actor OR actress OR oscar* OR award* "
        'OR band OR movie* OR "box office" OR festival OR star OR show OR comedy',
        "politics": "election* OR minister OR parliament OR government OR party OR MPs OR vote* OR "
        "campaign OR policy OR labour OR conservative* OR lib dem*",
        "sport": SPORT,
        "tech": TECH,
    },
    "ag": {
        "World": "president OR minister OR government OR troops OR killed OR war OR election* OR "
        "military OR rebels OR united nations OR police OR attack* OR peace OR leader*",
        "Sports": SPORT,
        "Business": BUSINESS,
        "Sci/Tech": f"{TECH} OR space OR nasa OR scientist* OR research* OR science",
    },
}


def bbc_items() -> list[tuple[str, str, str]]:
    root = corpus_dir("news", "bbc-news-greene2006")
    items = []
    with (root / "index.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["duplicate_of"]:
                continue  # exact duplicates are dropped, as the corpus README asks
            raw = (root / row["path"]).read_bytes()
            text = raw.decode(row["encoding"], "replace")  # one file is latin-1
            paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
            items.append((row["category"], paragraphs[0], paragraphs[1] if len(paragraphs) > 1 else ""))
    return items


def ag_items() -> list[tuple[str, str, str]]:
    root = corpus_dir("news", "ag-news-test", "ag_news_csv")
    classes = (root / "classes.txt").read_text().split()
    with (root / "test.csv").open(newline="", encoding="utf-8") as f:
        return [(classes[int(r[0]) - 1], r[1], r[2].replace("\\", " ")) for r in csv.reader(f)]


@pytest.mark.parametrize("dataset", ["bbc", "ag"])
def test_category_topics_precision_recall(dataset: str) -> None:
    items = bbc_items() if dataset == "bbc" else ag_items()
    compiler = Compiler(build_table())
    topics = {label: compiler.compile(label, query) for label, query in QUERIES[dataset].items()}
    topic_set = TopicSet(compiler).updated(topics)
    true_pos: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    actual = Counter(label for label, _, _ in items)
    candidates = 0
    for label, title, text in items:
        doc = Document(title, text, "en")
        found, evaluated = topic_set.matches(doc)
        candidates += evaluated
        matched = {t.id for t, _ in found}
        brute = {t.id for t in topics.values() if match(t.tree, doc, compiler.algorithms) is not None}
        assert matched == brute, f"presearch disagrees with brute force on {title!r}"
        for topic_id in matched:
            predicted[topic_id] += 1
            true_pos[topic_id] += topic_id == label
    print(f"\n{dataset}: {len(items)} items, {candidates / len(items):.2f} topics evaluated per item")
    print(f"{'topic':<15} {'items':>6} {'matched':>8} {'precision':>10} {'recall':>7}")
    for label in QUERIES[dataset]:
        precision = true_pos[label] / predicted[label] if predicted[label] else 0.0
        recall = true_pos[label] / actual[label]
        print(f"{label:<15} {actual[label]:>6} {predicted[label]:>8} {precision:>10.2f} {recall:>7.2f}")
        assert predicted[label] > 0, f"topic {label} matched nothing: its query or the matcher is broken"
    assert set(actual) == set(QUERIES[dataset]), "the dataset's labels changed"
