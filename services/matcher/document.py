"""An item prepared once for evaluation against every topic (pure).

Built for the matcher's hot path, where every item meets every candidate topic: the build
is a handful of C-level passes per field (lower-case it, split it into words, look each word's
keys up in a per-language ``Lexicon``, one set), and nothing per word is done in Python. The
words as written are sliced from the field only for a reason (``written``). What most topics
need is then a set probe or a substring search:

- ``body`` (title and text) and ``extra`` (source, author and the language) are sets of
  every word's keys: its spelling, comparable forms and prefix key; presearch probes both;
- ``lines[scope]`` is a scope's lower-case words joined by single spaces, with a space at
  each end, so a quoted phrase ``"north korea"`` is the substring ``" north korea "`` and a
  wildcard ``deploy*`` the substring ``" deploy"``. The body's line separates title from
  text with a newline, which no needle contains, so a phrase never crosses fields.

Word positions (for NEAR, multi-word aliases and the reason of a match) are worked out on
demand, per query term, by searching the lines for the term's spellings. A position is one int,
``field * FIELD_SPAN + index``, so positions in different fields are never "near" each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from newswatch.matcher.text import WORD, algorithm_for, lexicon_for, lower, split_words
from newswatch.shared.contract import Item

TITLE, TEXT, SOURCE, AUTHOR, BODY = range(5)
#: Scope of a query term → its id (None: title or text).
SCOPES: dict[str | None, int] = {"title": TITLE, "text": TEXT, "source": SOURCE, "author": AUTHOR, None: BODY}
FIELD_SPAN = 1 << 20
_FIELD_BITS = FIELD_SPAN.bit_length() - 1  # position >> _FIELD_BITS is the field
_INDEX_MASK = FIELD_SPAN - 1  # position & _INDEX_MASK the word's index in it
_MARKS = ".!?"  # sentence-ending marks


class Document:
    """One item's words, keys and lines (see the module docstring); built once per item."""

    __slots__ = ("_ends", "_field_keys", "_offsets", "_written", "body", "extra", "forms",
                 "language", "lexicon", "lines", "text", "title")  # fmt: skip

    def __init__(self, title: str, text: str, language: str = "", source: str = "", author: str = "") -> None:
        lexicon = self.lexicon = lexicon_for(algorithm_for(language))  # kept: its spellings
        keys_of = lexicon.__getitem__
        self.title = title
        self.text = text
        self.language = lower(language)
        offsets: list[Sequence[int]] = [(), ()]  # of the title's and the text's words, flat
        written: list[list[str]] = [[], [], [], []]  # source, author as written (title, text: sliced)
        forms: list[list[frozenset[str]]] = []
        lines: list[str] = []
        for field_id, value in enumerate((title, text, source, author)):
            if not value:
                lowered: list[str] = []
            elif field_id > TEXT:
                words = written[field_id] = WORD.findall(value)
                lowered = lower(" ".join(words)).split(" ")  # lower() never adds a space
            else:  # with the words' offsets: a reason needs them
                # Lower-cased whole, then split: the same words as splitting first, with the
                # same offsets, unless a character becomes two (Turkish dotted I) or a capital
                # sigma's form depends on what follows the word (``ΑΣ.Β``); then word by word.
                low = lower(value)
                if len(low) == len(value) and "Σ" not in value:
                    lowered, offsets[field_id] = split_words(low)
                else:
                    words, offsets[field_id] = split_words(value)
                    lowered = lower(" ".join(words)).split(" ")
            forms.append(list(map(keys_of, lowered)))
            lines.append(f" {' '.join(lowered)} ")
        lines.append(lines[TITLE] + "\n" + lines[TEXT])
        body: set[str] = set()
        body.update(*forms[TITLE], *forms[TEXT])  # the frozensets' own hashes: no key is read
        extra: set[str] = set()
        extra.update(*forms[SOURCE], *forms[AUTHOR])
        if self.language:
            extra.add("lang:" + self.language.split("-", 1)[0])
        self.body = body
        self.extra = extra
        self.forms = forms
        self.lines = lines
        self._offsets = offsets
        self._written = written
        self._field_keys: dict[int, set[str]] = {BODY: body}
        self._ends: list[int] | None = None

    @classmethod
    def from_item(cls, item: Item) -> Document:
        source = " ".join(s for s in (item.source.host, item.source.feed_title) if s)
        return cls(item.title, item.summary, item.language, source, " ".join(item.authors))

    def field_keys(self, scope: int) -> set[str]:
        """The keys of every word in ``scope`` (computed on first use: scoped terms are rare)."""
        found = self._field_keys.get(scope)
        if found is None:
            found = self._field_keys[scope] = set[str]().union(*self.forms[scope])
        return found

    # --- positions, on demand --------------------------------------------------------------
    # Each is a few C-level searches in a scope's line: the index of the word at character
    # ``at`` of a line is the number of spaces before it (in the body's line, before it and
    # after the newline when it is in the text).

    def starts(self, needle: str, scope: int) -> list[int]:
        """Ascending positions, in ``scope``, where ``needle`` begins: a space, then lower-case
        words separated by single spaces, then a space for whole words (``" north korea "``,
        a phrase) or none for a prefix (``" deploy"``, a wildcard)."""
        line = self.lines[scope]
        at = line.find(needle)
        if at < 0:
            return []
        found: list[int] = []
        if scope != BODY:
            base = scope * FIELD_SPAN
            while at >= 0:
                found.append(base + line.count(" ", 0, at))
                at = line.find(needle, at + 1)
            return found
        text_at = len(self.lines[TITLE]) + 1  # the body's line: title, a newline, text
        while at >= 0:
            if at < text_at:
                found.append(line.count(" ", 0, at))
            else:
                found.append(FIELD_SPAN + line.count(" ", text_at, at))
            at = line.find(needle, at + 1)
        return found

    def positions(self, forms: frozenset[str], scope: int) -> list[int]:
        """Ascending positions, in ``scope``, of the words whose keys meet ``forms``."""
        keys = self.field_keys(scope)
        present = forms.intersection(keys)
        if not present:
            return []
        spellings = self.lexicon.spellings.get
        words = set().union(*[spellings(form, ()) for form in present]).intersection(keys)
        found: list[int] = []
        for word in words:
            found += self.starts(f" {word} ", scope)
        if len(words) > 1:
            found.sort()
        return found

    def sequence_starts(self, forms: Sequence[frozenset[str]], scope: int) -> list[int]:
        """Ascending positions where word i's keys meet ``forms[i]``, for each i in turn."""
        found: list[int] = []
        for start in self.positions(forms[0], scope):
            keys = self.forms[start >> _FIELD_BITS]
            index = start & _INDEX_MASK
            if index + len(forms) > len(keys):
                continue
            for offset in range(1, len(forms)):
                if forms[offset].isdisjoint(keys[index + offset]):
                    break
            else:
                found.append(start)
        return found

    # --- for the reason of a match ---------------------------------------------------------

    def offsets(self, field_id: int) -> Sequence[int]:
        """Word i of the title or text spans characters [o[2i], o[2i + 1]) of the field."""
        return self._offsets[field_id]

    def written(self, position: int) -> str:
        """The word at ``position`` as the item wrote it (for a reason's terms)."""
        field_id, index = position >> _FIELD_BITS, position & _INDEX_MASK
        if field_id > TEXT:
            return self._written[field_id][index]
        offsets = self.offsets(field_id)
        return (self.title if field_id == TITLE else self.text)[offsets[2 * index] : offsets[2 * index + 1]]

    def sentence_ends(self) -> list[int]:
        """Where the text's sentences end, ascending: just after each run of sentence-ending
        marks. Found on an item's first reason with a few ``str.find`` calls per mark (SIMD
        scans; a regex over the text cost 27k instructions an item, measured), after which
        the sentence of a hit is a binary search (``bisect_right(ends, offset)``: its number)."""
        found = self._ends
        if found is None:
            text = self.text
            marks: list[int] = []
            for mark in _MARKS:
                at = text.find(mark)
                while at >= 0:
                    marks.append(at)
                    at = text.find(mark, at + 1)
            marks.sort()
            # A run ends at a mark the next character of which is no mark.
            found = self._ends = [
                at + 1 for i, at in enumerate(marks) if i + 1 == len(marks) or marks[i + 1] != at + 1
            ]
        return found
