"""Language of an item when neither the entry nor the feed declares one.

py3langid (a small n-gram model, ~20 µs a call) guesses from the title and summary. Texts
shorter than ``MIN_CHARS`` are left without a language rather than guessed wrongly. The
model loads on first use (~0.5 s), so a fetcher whose feeds all declare a language never
pays for it.
"""

from __future__ import annotations

import threading

import py3langid

MIN_CHARS = 40
_first_use = threading.Lock()
_loaded = False


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``'s language, or "" when the text is too short to tell."""
    global _loaded  # noqa: PLW0603 - one lazily loaded model per process
    text = text.strip()
    if len(text) < MIN_CHARS:
        return ""
    if not _loaded:
        with _first_use:  # the library loads its model on the first call, without a lock
            language, _ = py3langid.classify(text)
            _loaded = True
            return str(language)
    language, _ = py3langid.classify(text)
    return str(language)
