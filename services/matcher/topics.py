"""The live set of compiled topics, replaced atomically on every change.

The matcher evaluates each item against one TopicSet object; a change from
``newswatch.topics`` builds a new set and swaps the reference, so an item sees the old
or the new set, never half of one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from newswatch.matcher.query import Query, compile_query


@dataclass(frozen=True)
class Topic:
    id: str
    query: Query


class TopicSet:
    def __init__(self, topics: Mapping[str, Topic] | None = None) -> None:
        self._topics: Mapping[str, Topic] = MappingProxyType(dict(topics or {}))

    def __len__(self) -> int:
        return len(self._topics)

    def __iter__(self) -> Iterator[Topic]:
        return iter(self._topics.values())

    def get(self, topic_id: str) -> Topic | None:
        return self._topics.get(topic_id)

    def with_topic(self, topic_id: str, query: str) -> TopicSet:
        """A new set with ``topic_id`` (re)defined; raises QueryError and leaves self intact."""
        compiled = compile_query(query)
        current = self._topics.get(topic_id)
        if current is not None and current.query == compiled:
            return self
        return TopicSet({**self._topics, topic_id: Topic(topic_id, compiled)})

    def without(self, topic_id: str) -> TopicSet:
        if topic_id not in self._topics:
            return self
        return TopicSet({k: v for k, v in self._topics.items() if k != topic_id})
