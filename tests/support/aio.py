"""Running the fetcher's coroutines from synchronous tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Aio:
    """Runs coroutines on one event loop kept for the whole test.

    An httpx.AsyncClient is bound to the loop its connections were opened on, so a test
    that makes several calls with one client must make them all on the same loop.
    """

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        self._runner.close()
