"""Matcher baseline: items/s of the plain-words matcher vs. tokenize+stem alone.

Run: ``.venv/bin/python bench/matcher.py [--items N]``. Prints a table with the ratio, so
later matcher work (presearch, query language) can be compared with this skeleton.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime

from newswatch.matcher.evaluate import Document, evaluate
from newswatch.matcher.query import compile_query
from newswatch.matcher.text import tokenize, word_forms
from newswatch.shared.contract import Item, Source

WORDS = (
    "north korea ukraine deployment troops russia nato summit election minister president bank market "
    "inflation rates storm flood heatwave europe china trade tariffs vaccine hospital court ruling strike "
    "union football final league energy gas pipeline oil prices climate talks border ceasefire drone attack"
).split()


def make_items(count: int, rng: random.Random) -> list[Item]:
    now = datetime.now(UTC)
    source = Source(feed_url="http://127.0.0.1/feed.xml", feed_title="Bench", host="127.0.0.1")
    return [
        Item(
            item_id=f"{i:016d}",
            title=" ".join(rng.choices(WORDS, k=9)).capitalize(),
            summary=". ".join(" ".join(rng.choices(WORDS, k=14)) for _ in range(4)),
            fetched_at=now,
            source=source,
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=3000)
    args = parser.parse_args()
    rng = random.Random(42)
    items = make_items(args.items, rng)

    word_forms.cache_clear()
    started = time.perf_counter()
    for item in items:
        for field in (item.title, item.summary):
            for token in tokenize(field):
                word_forms(token.text)
    stem_rate = len(items) / (time.perf_counter() - started)

    print(f"{'topics':>7} {'items/s':>10} {'vs tokenize+stem':>18} {'matches':>8}")
    print(f"{'-':>7} {stem_rate:>10.0f} {'1.00x':>18} {'-':>8}   (tokenize+stem alone)")
    for n_topics in (10, 100, 1000):
        queries = [compile_query(" ".join(rng.sample(WORDS, k=rng.randint(2, 4)))) for _ in range(n_topics)]
        word_forms.cache_clear()
        started = time.perf_counter()
        matched = 0
        for item in items:
            doc = Document.from_item(item)
            matched += sum(1 for q in queries if evaluate(q, doc) is not None)
        rate = len(items) / (time.perf_counter() - started)
        print(f"{n_topics:>7} {rate:>10.0f} {rate / stem_rate:>17.2f}x {matched:>8}")


if __name__ == "__main__":
    main()
