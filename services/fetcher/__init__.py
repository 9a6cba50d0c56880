"""The fetcher service: polls feeds and publishes new, normalized items to ``newswatch.items``."""
