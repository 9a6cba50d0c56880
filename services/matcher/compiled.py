"""Whether the matcher's hot code runs compiled or as Python source.

Compiled means the modules mypyc builds at install (``document``, ``evaluate``,
``presearch``) and presearch's pair table in C (``_keypairs``, see ``keypairs``). Both forms
behave the same; compiled, an item costs far less CPU (bench/README.md). An image or a venv
built without a C compiler (or with ``NEWSWATCH_PURE_PYTHON=1``) runs the source, and the
operator sees it in a log line at start and in ``newswatch_matcher_compiled``.
"""

from __future__ import annotations

from types import ModuleType

from newswatch.matcher import document, evaluate, keypairs, presearch

HOT_MODULES: tuple[ModuleType, ...] = (document, evaluate, presearch)


def source_modules() -> list[str]:
    """The hot modules that run as Python source ([] when all are compiled); the pair table
    counts as ``newswatch.matcher._keypairs`` when its Python twin stands in for it."""
    source = [m.__name__ for m in HOT_MODULES if (m.__file__ or "").endswith(".py")]
    if not keypairs.compiled():
        source.append("newswatch.matcher._keypairs")
    return source
