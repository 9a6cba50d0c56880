"""Compiled topics and the live topic set, replaced atomically on every change.

A topic is compiled once (parse, aliases, presearch keys). The matcher evaluates each item
against one TopicSet object; a batch of changes from ``newswatch.topics`` builds a new set
(and its presearch index) and swaps the reference, so an item sees the old or the new set,
never half of one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from newswatch.matcher.aliases import AliasTable, build_table
from newswatch.matcher.document import Document
from newswatch.matcher.evaluate import Plan
from newswatch.matcher.parser import parse
from newswatch.matcher.presearch import Index, Keys, KeyStats, required
from newswatch.matcher.syntax import Node
from newswatch.matcher.text import algorithm_for
from newswatch.shared.config import MatcherSettings
from newswatch.shared.contract import MatchReason
from newswatch.shared.languages import DEFAULT_LANGUAGES


@dataclass(frozen=True)
class Topic:
    id: str
    query: str  # as written, whitespace normalized
    tree: Node
    required: tuple[Keys, ...]  # presearch: key groups a matching item meets; () = every item
    plan: Plan = field(compare=False, repr=False)  # the compiled tree (not part of equality)

    @property
    def indexed(self) -> bool:
        return bool(self.required)


class Compiler:
    """Turns query text into Topics with one alias table and one set of stemming languages."""

    def __init__(
        self, aliases: AliasTable | None = None, languages: tuple[str, ...] = DEFAULT_LANGUAGES
    ) -> None:
        self.aliases = aliases or AliasTable()
        self.algorithms = tuple(dict.fromkeys(algorithm_for(code) for code in languages))

    @classmethod
    def from_settings(cls, settings: MatcherSettings) -> Compiler:
        """From the ``matcher`` config section; AliasError names a bad alias file or set."""
        table = build_table(settings.aliases, settings.alias_files, settings.starter_aliases)
        return cls(table, settings.languages)

    def compile(self, topic_id: str, query: str) -> Topic:
        """Raises QueryError (with position) when the query is invalid."""
        tree = parse(query, self.aliases)
        return Topic(
            topic_id,
            " ".join(query.split()),
            tree,
            tuple(required(tree, self.algorithms)),
            Plan(tree, self.algorithms),
        )

    def explain(self, topic: Topic, doc: Document) -> MatchReason | None:
        return topic.plan.explain(doc)


class TopicSet:
    def __init__(
        self, compiler: Compiler, topics: Mapping[str, Topic] | None = None, stats: KeyStats | None = None
    ) -> None:
        self.compiler = compiler
        self.stats = stats
        self._topics: Mapping[str, Topic] = MappingProxyType(dict(topics or {}))

    def __len__(self) -> int:
        return len(self._topics)

    def __iter__(self) -> Iterator[Topic]:
        return iter(self._topics.values())

    def get(self, topic_id: str) -> Topic | None:
        return self._topics.get(topic_id)

    def updated(self, changes: Mapping[str, Topic | None]) -> TopicSet:
        """A new set with ``changes`` applied (None deletes); self if nothing changes."""
        topics = dict(self._topics)
        for topic_id, topic in changes.items():
            if topic is None:
                topics.pop(topic_id, None)
            else:
                topics[topic_id] = topic
        if topics == dict(self._topics):
            return self
        return TopicSet(self.compiler, topics, self.stats)

    def replanned(self) -> TopicSet:
        """The same topics, indexed with what ``stats`` has learned since this set was built."""
        return TopicSet(self.compiler, self._topics, self.stats)

    @functools.cached_property
    def _ordered(self) -> tuple[Topic, ...]:
        return tuple(self._topics.values())

    @functools.cached_property
    def _plans(self) -> tuple[Plan, ...]:
        """Each topic's plan by position: the hot loop reads one tuple, not every Topic's
        attributes (each candidate's would be a few cache misses)."""
        return tuple(t.plan for t in self._ordered)

    @functools.cached_property
    def index(self) -> Index:
        """Built once per set, on first use (a batch of changes builds it once)."""
        return Index([list(t.required) for t in self._ordered], self.stats)

    @property
    def unindexed(self) -> int:
        return len(self.index.unindexed)

    def _candidates(self, doc: Document) -> list[int]:
        """Positions of the topics presearch finds for ``doc`` (its keys are sampled for the
        re-plans)."""
        if self.stats is not None:
            self.stats.observe(doc.body, doc.extra)
        return self.index.candidates(doc.body, doc.extra)

    def candidates(self, doc: Document) -> list[Topic]:
        """The topics presearch finds for ``doc``."""
        ordered = self._ordered
        return [ordered[i] for i in self._candidates(doc)]

    def matches(self, doc: Document) -> tuple[list[tuple[Topic, MatchReason]], int]:
        """Every topic ``doc`` matches, with the reason, and how many topics were evaluated.

        Only presearch candidates are evaluated.
        """
        found, candidates, _slow = self.timed_matches(doc, float("inf"))
        return found, candidates

    def timed_matches(
        self, doc: Document, budget: float
    ) -> tuple[list[tuple[Topic, MatchReason]], int, list[tuple[Topic, float]]]:
        """``matches``, and the topics that took longer than ``budget`` seconds on ``doc``.

        Query limits bound a topic's cost by construction; this is the guard behind them: a
        topic that still costs more is reported, so the matcher can set it aside instead of
        stalling every item behind it."""
        found = []
        slow: list[tuple[Topic, float]] = []
        plans = self._plans
        candidates = self._candidates(doc)
        clock = time.perf_counter
        for position in candidates:
            plan = plans[position]
            started = clock()
            if plan.check(doc):  # the cheap test; the reason's work only for a match
                found.append((self._ordered[position], plan.explain_match(doc)))
            took = clock() - started
            if took > budget:
                slow.append((self._ordered[position], took))
        return found, len(candidates), slow
