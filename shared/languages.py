"""Languages newswatch can stem: ISO 639-1 code → Snowball algorithm name (PyStemmer).

Kept in ``shared`` because the config validates ``matcher.languages`` against it.
"""

from __future__ import annotations

SNOWBALL = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "eu": "basque", "fi": "finnish", "fr": "french", "ga": "irish",
    "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "nb": "norwegian", "ne": "nepali", "nl": "dutch", "no": "norwegian",
    "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian",
    "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}  # fmt: skip
#: Languages a query word is stemmed in when the config does not say (``matcher.languages``).
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "ru")
