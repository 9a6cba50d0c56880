"""An item prepared once for evaluation against every topic (pure).

Words are indexed by position per field, both by their comparable forms (stems; see
``text``) and by their exact lower-case spelling (for quoted phrases and wildcards).
A position is one int: ``field * FIELD_SPAN + index``, so positions in different fields
are never "near" each other and phrases cannot cross from the title into the text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from newswatch.matcher.text import algorithm_for, doc_forms, spans
from newswatch.shared.contract import Item

TITLE, TEXT, SOURCE, AUTHOR = range(4)
FIELD_IDS = {
    "title": (TITLE,),
    "text": (TEXT,),
    "source": (SOURCE,),
    "author": (AUTHOR,),
    None: (TITLE, TEXT),
}
FIELD_SPAN = 1 << 20
PREFIX_KEY = 3  # wildcard prefixes are indexed by their first three letters
_SENTENCE_END = re.compile(r"[.!?]+")
_PREFIX_KEYS_KEPT = 500_000


class _PrefixKeys(dict[str, str]):
    """word → its presearch prefix key ``p:abc``, remembered (bounded) so that probing an
    item costs one C-level lookup per word. A word shorter than the prefix gets a key no
    topic is indexed under (wildcards need at least ``PREFIX_KEY`` letters)."""

    def __missing__(self, word: str) -> str:
        key = "p:" + word[:PREFIX_KEY]
        if len(self) < _PREFIX_KEYS_KEPT:
            self[word] = key
        return key


_prefix_keys = _PrefixKeys()


@dataclass
class Document:
    title: str
    text: str
    language: str
    surface: list[list[str]]  # per field, the words as written
    offsets: list[list[tuple[int, int]]]  # per field (title, text only), character spans
    forms: dict[str, list[int]] = field(default_factory=dict)  # form → positions
    words: dict[str, list[int]] = field(default_factory=dict)  # lower-case word → positions

    @classmethod
    def from_item(cls, item: Item) -> Document:
        source = " ".join(s for s in (item.source.host, item.source.feed_title) if s)
        return cls.build(item.title, item.summary, item.language, source, " ".join(item.authors))

    @classmethod
    def build(cls, title: str, text: str, language: str = "", source: str = "", author: str = "") -> Document:
        algorithm = algorithm_for(language)
        doc = cls(title, text, language.lower(), [], [])
        words, forms = doc.words, doc.forms
        for field_id, value in enumerate((title, text, source, author)):
            tokens = spans(value) if value else []
            doc.surface.append([t[0] for t in tokens])
            doc.offsets.append([(t[1], t[2]) for t in tokens] if field_id <= TEXT else [])
            position = field_id * FIELD_SPAN
            for word, _start, _end in tokens:
                lowered = word.lower()
                words.setdefault(lowered, []).append(position)
                for form in doc_forms(word, algorithm):
                    forms.setdefault(form, []).append(position)
                position += 1
        return doc

    @functools.cached_property
    def sentence_starts(self) -> list[int]:
        """Where the text's sentences start (for the reason's snippet): 0, then after each
        run of sentence-ending marks. Sentence i ends where sentence i + 1 starts."""
        return [0, *[m.end() for m in _SENTENCE_END.finditer(self.text)]]

    def keys(self) -> set[str]:
        """What the presearch index is probed with: every form, prefix and the language."""
        keys = set(self.forms)
        keys.update(map(_prefix_keys.__getitem__, self.words))
        if self.language:
            keys.add("lang:" + self.language.split("-", 1)[0])
        return keys
