"""Every metric of the matcher, declared in one place.

Per-topic matches carry a ``topic`` label for the first ``TOPIC_LABELS`` topics that match;
later ones are counted under ``_other``, so the series count stays bounded however many
topics users create.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from newswatch import __version__
from newswatch.matcher.compiled import source_modules
from newswatch.matcher.text import lexicon_resets, lexicon_words
from newswatch.shared.metrics import PipelineMetrics

TOPIC_ERROR_REASONS = ("decode", "compile")
TOPIC_LABELS = 100
OTHER_TOPICS = "_other"


class MatcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pipeline = PipelineMetrics(registry, "matcher", __version__)
        self.items_evaluated = Counter(
            "newswatch_matcher_items_evaluated_total",
            "Items tested against the topic set.",
            registry=registry,
        )
        self.items_matched = Counter(
            "newswatch_matcher_items_matched_total",
            "Items that matched at least one topic.",
            registry=registry,
        )
        self.matches = Counter(
            "newswatch_matcher_matches_published_total",
            "(topic, item) matches acknowledged by Kafka on newswatch.matches.",
            registry=registry,
        )
        self.evaluation_seconds = Histogram(
            "newswatch_matcher_evaluation_seconds",
            "Time to evaluate one item against all topics.",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
            registry=registry,
        )
        self.topics_loaded = Gauge(
            "newswatch_matcher_topics", "Topics in the live topic set.", registry=registry
        )
        self.topics_unindexed = Gauge(
            "newswatch_matcher_topics_unindexed",
            "Topics without presearch keys (only NOTs, say): evaluated for every item.",
            registry=registry,
        )
        self.presearch_pairs = Gauge(
            "newswatch_matcher_presearch_pairs",
            "Key pairs in the presearch index (a topic has one per key pair of its two most selective "
            "required groups, or one per key of its only group); about 12 bytes each.",
            registry=registry,
        )
        self.candidates = Histogram(
            "newswatch_matcher_candidates",
            "Topics evaluated per item after presearch (presearch efficiency: low is good).",
            buckets=(0, 1, 2, 5, 10, 20, 50, 100, 500, 1000, 5000),
            registry=registry,
        )
        self.replans = Counter(
            "newswatch_matcher_presearch_replans_total",
            "Times the presearch index was rebuilt to use the rarest words seen in recent items.",
            registry=registry,
        )
        self.topic_matches = Counter(
            "newswatch_matcher_topic_matches_total",
            f"Matches by topic id; topics beyond the first {TOPIC_LABELS} that matched count as {OTHER_TOPICS}.",
            ["topic"],
            registry=registry,
        )
        self._labelled: set[str] = set()
        self.lexicon_words = Gauge(
            "newswatch_matcher_lexicon_words",
            "Words in the matcher's word caches, once per language (each stemmed once; bounded, see resets).",
            registry=registry,
        )
        self.lexicon_words.set_function(lexicon_words)
        self.lexicon_resets = Counter(
            "newswatch_matcher_lexicon_resets_total",
            "Times the word cache was full and started afresh (often: the news vocabulary outgrew it).",
            registry=registry,
        )
        self._resets_seen = lexicon_resets()
        self.compiled = Gauge(
            "newswatch_matcher_compiled",
            "1 when the matcher's hot code runs compiled (mypyc modules, C pair table and word splitter), "
            "0 when any of it runs as Python source (correct, slower).",
            registry=registry,
        )
        self.compiled.set(0 if source_modules() else 1)
        self.topic_errors = Counter(
            "newswatch_matcher_topic_errors_total",
            "Topic definitions rejected (the previous version stays), by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in TOPIC_ERROR_REASONS:
            self.topic_errors.labels(reason)
        self.topics_disabled = Counter(
            "newswatch_matcher_topics_disabled_total",
            "Topics set aside because one item took longer than matcher.topic_budget to evaluate "
            "(each stays out until its definition changes; the log names it).",
            registry=registry,
        )

    def count_topic_match(self, topic_id: str) -> None:
        if topic_id not in self._labelled and len(self._labelled) < TOPIC_LABELS:
            self._labelled.add(topic_id)
        label = topic_id if topic_id in self._labelled else OTHER_TOPICS
        self.topic_matches.labels(label).inc()

    def count_lexicon_resets(self) -> None:
        """Brings the reset counter up to date (an int compare per item; the cache is pure)."""
        resets = lexicon_resets()
        if resets != self._resets_seen:
            self.lexicon_resets.inc(resets - self._resets_seen)
            self._resets_seen = resets
