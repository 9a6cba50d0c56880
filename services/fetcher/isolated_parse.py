"""Parsing large feeds in a child process that is killed when it takes too long.

feedparser is pure Python and cannot be interrupted from another thread. Typical feeds
(well under ``isolate_above`` bytes) parse in-process in milliseconds; a large body is
handed to a fresh ``spawn`` child, and the child is terminated after ``timeout`` seconds,
so no single feed can hold a worker (or the CPU) for longer than that.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from newswatch.fetcher.errors import ParseError
from newswatch.fetcher.parse import ParsedFeed, parse_feed

_CONTEXT = multiprocessing.get_context("spawn")  # no fork of a threaded process


def _child(conn: Connection, args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", parse_feed(*args)))
    except ParseError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises ParseError
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def parse_feed_capped(
    body: bytes,
    content_type: str,
    url: str,
    max_bytes: int,
    headers: Mapping[str, str] | None,
    timeout: float,
    isolate_above: int,
) -> ParsedFeed:
    """``parse_feed``, in a killable child process when ``body`` is larger than ``isolate_above``."""
    if len(body) <= isolate_above:
        return parse_feed(body, content_type, url, max_bytes, headers)
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=_child, args=(sender, (body, content_type, url, max_bytes, dict(headers or {}))), daemon=True
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise ParseError(f"{url}: parsing took longer than {timeout:g}s ({len(body)} bytes); stopped")
        try:
            status, value = receiver.recv()
        except EOFError as exc:
            raise ParseError(f"{url}: the parser process died (exit code {process.exitcode})") from exc
    finally:
        receiver.close()
        if process.is_alive():
            process.terminate()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    if status != "ok" or not isinstance(value, ParsedFeed):
        raise ParseError(str(value))
    return value
