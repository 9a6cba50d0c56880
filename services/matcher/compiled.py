"""Whether the matcher's hot code runs compiled or as Python source.

Compiled means the modules mypyc builds at install (``document``, ``evaluate``,
``presearch``), presearch's pair table in C (``_keypairs``, see ``keypairs``) and the word
splitter in C (``_words``, see ``text.split_words``). Both forms
behave the same; compiled, an item costs far less CPU (bench/README.md). An image or a venv
built without a C compiler (or with ``NEWSWATCH_PURE_PYTHON=1``) runs the source, and the
operator sees it in a log line at start and in ``newswatch_matcher_compiled``.
"""

from __future__ import annotations

from types import ModuleType

from newswatch.matcher import document, evaluate, keypairs, presearch, text

HOT_MODULES: tuple[ModuleType, ...] = (document, evaluate, presearch)


def source_modules() -> list[str]:
    """The hot modules that run as Python source ([] when all are compiled); the C pair table
    and word splitter count as ``newswatch.matcher._keypairs`` and ``_words`` when their Python
    twins stand in for them."""
    source = [m.__name__ for m in HOT_MODULES if (m.__file__ or "").endswith(".py")]
    if not keypairs.PAIRS_IN_C:
        source.append("newswatch.matcher._keypairs")
    if not text.WORDS_IN_C:
        source.append("newswatch.matcher._words")
    return source
