"""Alias sets: names of one entity (``North Korea`` ≡ ``DPRK`` ≡ ``Pyongyang`` ≡ ``КНДР``).

A topic that names any member matches every member, so one query covers the ways news
writes about an entity. Sets come from the starter file shipped with newswatch (our own
list of common geopolitical entities), from files named in the config, and from the
config itself; they are applied when a topic is compiled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import yaml

from newswatch.matcher.errors import AliasError
from newswatch.matcher.text import tokenize
from newswatch.shared import yaml_input

STARTER = "geopolitics.yaml"


def _key(words: Iterable[str]) -> tuple[str, ...]:
    return tuple(w.lower() for w in words)


class AliasTable:
    """Lookup from a run of query words to the alternatives of its entity (case-insensitive)."""

    def __init__(self, sets: Sequence[Sequence[str]] = ()) -> None:
        self._by_key: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
        self.longest = 0
        for index, names in enumerate(sets):
            tokenized = []
            for name in names:
                words = tuple(t.text for t in tokenize(str(name)))
                if not words:
                    raise AliasError(f"alias set {index + 1}: {name!r} has no letters or digits")
                if words not in tokenized:
                    tokenized.append(words)
            if len(tokenized) < 2:
                raise AliasError(f"alias set {index + 1} ({list(names)}) needs at least two different names")
            alternatives = tuple(tokenized)
            for words in alternatives:
                key = _key(words)
                if key in self._by_key and self._by_key[key] != alternatives:
                    # One name in two sets would make a query mean two different things.
                    raise AliasError(f"{' '.join(words)!r} is in two alias sets; merge them")
                self._by_key[key] = alternatives
                self.longest = max(self.longest, len(words))

    def __len__(self) -> int:
        return len({id(v) for v in self._by_key.values()})

    def lookup(self, words: Sequence[str]) -> tuple[tuple[str, ...], ...] | None:
        return self._by_key.get(_key(words))

    def expansions(self, text: str) -> list[tuple[str, list[str]]]:
        """The alias sets ``text`` names, longest name first, as (the name as written, the
        other names of its set): what a query's words also match ("North Korea" = DPRK, …)."""
        words = [t.text for t in tokenize(text)]
        found: list[tuple[str, list[str]]] = []
        at = 0
        while at < len(words):
            for size in range(min(self.longest, len(words) - at), 0, -1):
                run = words[at : at + size]
                alternatives = self.lookup(run)
                if alternatives is not None:
                    key = _key(run)
                    others = [" ".join(a) for a in alternatives if _key(a) != key]
                    if not any(name.lower() == " ".join(key) for name, _ in found):
                        found.append((" ".join(run), others))
                    at += size
                    break
            else:
                at += 1
        return found


def load_sets(path: Path | str) -> list[list[str]]:
    """Alias sets from a YAML file: a list of lists of names. Errors name the file and entry."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml_input.load(text, str(path))
    except (OSError, yaml_input.YamlInputError) as exc:
        raise AliasError(f"cannot read alias file {path}: {exc}") from exc
    return _validated(data, str(path))


def starter_sets() -> list[list[str]]:
    """The alias sets shipped with newswatch."""
    text = resources.files("newswatch.matcher").joinpath(STARTER).read_text(encoding="utf-8")
    return _validated(yaml.safe_load(text), STARTER)


def _validated(data: object, where: str) -> list[list[str]]:
    if not isinstance(data, list) or not all(
        isinstance(entry, list) and all(isinstance(n, str) for n in entry) for entry in data
    ):
        raise AliasError(f"{where}: expected a list of alias sets, each a list of names")
    return [list(entry) for entry in data]


def build_table(
    configured: Sequence[Sequence[str]] = (), files: Sequence[Path | str] = (), starter: bool = True
) -> AliasTable:
    """The starter sets (unless disabled), then each file, then the config's own sets."""
    sets: list[list[str]] = starter_sets() if starter else []
    for path in files:
        sets += load_sets(path)
    sets += [list(s) for s in configured]
    return AliasTable(_merged(sets))


def _merged(sets: list[list[str]]) -> list[list[str]]:
    """Sets sharing a name are one entity: a later file may extend a starter set."""
    merged: list[list[str]] = []
    owner: dict[tuple[str, ...], int] = {}
    for names in sets:
        keys = [_key(t.text for t in tokenize(n)) for n in names]
        targets = sorted({owner[k] for k in keys if k in owner})
        if not targets:
            merged.append(list(names))
            index = len(merged) - 1
        else:
            index = targets[0]
            for other in targets[1:]:
                merged[index] += merged[other]
                merged[other] = []
            merged[index] += list(names)
        for entry_name in merged[index]:
            owner[_key(t.text for t in tokenize(entry_name))] = index
    return [list(dict.fromkeys(s)) for s in merged if s]
