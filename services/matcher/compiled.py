"""Whether the matcher's hot modules run compiled (mypyc, see setup.py) or as Python source.

Both behave the same; compiled, an item costs about a fifth less CPU. An image or a venv
built without a C compiler (or with ``NEWSWATCH_PURE_PYTHON=1``) runs the source, and the
operator sees it in a log line at start and in ``newswatch_matcher_compiled``.
"""

from __future__ import annotations

from types import ModuleType

from newswatch.matcher import document, evaluate, presearch

HOT_MODULES: tuple[ModuleType, ...] = (document, evaluate, presearch)


def source_modules() -> list[str]:
    """The hot modules that run as Python source ([] when all are compiled)."""
    return [m.__name__ for m in HOT_MODULES if (m.__file__ or "").endswith(".py")]
