"""Build hook: the matcher's hot modules compiled to C with mypyc, and presearch's pair table
(``services/matcher/_keypairs.c``) and the word splitter (``_words.c``) built (everything
else is pyproject.toml).

Why: every item meets every presearch candidate in ``document``, ``evaluate`` and
``presearch``; compiled, the matcher takes about a fifth less CPU per item (bench/README.md).
The same modules stay in the package as Python source, so behaviour is the source's; the
compiled ones are found first on import.

mypyc names a module by the packages around its file, and the repository layout maps
``services/`` onto ``newswatch`` only when installed, so the sources are compiled from a
staged copy laid out as the installed package (``build/mypyc-src/newswatch/...``).

Set ``NEWSWATCH_PURE_PYTHON=1`` to install without compiling; without a C compiler or Python's
headers the build says so and installs pure Python, which is correct, only slower. Every
extension is optional: one that fails to compile is left out with a warning and its Python
source runs instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from mypyc.build import mypycify  # a build requirement (pyproject.toml)
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
#: The modules compiled (paths inside the installed package).
COMPILED = ("matcher/document.py", "matcher/evaluate.py", "matcher/presearch.py")
STAGE = ROOT / "build" / "mypyc-src"
#: Names of the extensions mypyc made (they stand or fall together, see GroupOrNothing).
GROUP: set[str] = set()


def _missing_toolchain() -> str | None:
    """What compiling would lack (a C compiler, Python's headers), or None."""
    name = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(name) is None:
        return f"no C compiler ({name}; set CC or install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python headers (Python.h; on Debian install python3-dev)"
    return None


def _stage() -> list[str]:
    """The package as it is installed (``services/`` as ``newswatch``, ``shared/`` inside it)."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    package = STAGE / "newswatch"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "services", package, ignore=ignore)
    shutil.copytree(ROOT / "shared", package / "shared", ignore=ignore)
    config = STAGE / "mypy.ini"
    # Only the types of the compiled modules matter here; third-party packages are not
    # installed in the build environment, so their names are Any (checked by `make lint`).
    config.write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n")
    return ["--config-file", str(config), *(str(package / path) for path in COMPILED)]


def _extensions() -> list[Extension]:
    if os.environ.get("NEWSWATCH_PURE_PYTHON", "") not in ("", "0"):
        print("newswatch: NEWSWATCH_PURE_PYTHON is set: the matcher stays pure Python", file=sys.stderr)
        return []
    missing = _missing_toolchain()
    if missing is not None:
        print(f"newswatch: {missing}: the matcher stays pure Python, correct but slower", file=sys.stderr)
        return []
    # mypy names a module from the packages around its file: newswatch.matcher.document.
    compiled = list(mypycify(_stage(), opt_level="3", group_name="newswatch_matcher"))
    GROUP.update(extension.name for extension in compiled)
    # Presearch's pair table, written in C (keypairs.py is its Python twin and says why).
    pairs = Extension("newswatch.matcher._keypairs", ["services/matcher/_keypairs.c"])
    # An item's words (text.split_words is its Python twin and says why).
    words = Extension("newswatch.matcher._words", ["services/matcher/_words.c"])
    extensions = [*compiled, pairs, words]
    for extension in extensions:
        # A compile error (an unusual compiler, a Python whose internals differ) must not fail
        # the install: setuptools then skips the module with a warning, the Python twin runs,
        # and the matcher says so at start (compiled.py).
        extension.optional = True
    return extensions


class GroupOrNothing(build_ext):  # type: ignore[misc] # setuptools is untyped
    """mypyc's modules are thin shims around one shared group library: a shim built without its
    group would fail to import instead of falling back to the Python source. So when any of
    them failed, none of them is kept."""

    def run(self) -> None:
        super().run()
        group = [e for e in self.extensions if e.name in GROUP]
        built = [Path(self.get_ext_fullpath(e.name)) for e in group]
        if any(not path.exists() for path in built):
            for path in built:
                path.unlink(missing_ok=True)
            if group:
                print(
                    "newswatch: the mypyc modules did not all build: the matcher's hot modules stay Python",
                    file=sys.stderr,
                )


if __name__ == "__main__":  # as setuptools runs it; tests import _missing_toolchain
    setup(ext_modules=_extensions(), cmdclass={"build_ext": GroupOrNothing})
