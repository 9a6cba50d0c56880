"""Near-duplicate detection: one story syndicated by several feeds is alerted once (pure).

An item's fingerprint is the 64-bit SimHash (``simhash`` package) of the words of its
title and summary; two items are one story when their fingerprints differ in at most
``notifier.duplicate_distance`` bits. Measured on a hand-made set: a copy with a changed
byline or an extra sentence differs by 4 bits, the same event rewritten by another
outlet by about 12, a different story on the same subject by about 19, an unrelated
story by more than 30 (default threshold 6: copies merge, rewrites stay separate). The
store compares them in the database (``shared.db.bit_distance``).
"""

from __future__ import annotations

import re

from simhash import Simhash

from newswatch.shared.contract import Item

_WORD = re.compile(r"\w+", re.UNICODE)


def fingerprint(item: Item) -> int:
    words = _WORD.findall(f"{item.title} {item.summary}".lower())
    return int(Simhash(words or [item.item_id]).value)
