"""Content-Encoding decoding with a hard cap on the decoded size.

httpx's own decoders inflate a whole network chunk at once, so one 64 KB chunk of a gzip
bomb becomes ~64 MB before any size check can run. These decoders never produce more than
the remaining budget (+1 byte to detect overflow) per call.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import brotli

from newswatch.fetcher.errors import ParseError, TooLargeError

SUPPORTED = ("gzip", "x-gzip", "deflate", "br", "identity")
ACCEPT_ENCODING = "gzip, deflate, br"


class CappedDecoder:
    """Decodes a (possibly multi-layer) Content-Encoding, raising once output exceeds ``max_bytes``."""

    def __init__(self, content_encoding: str, max_bytes: int) -> None:
        names = [n.strip().lower() for n in content_encoding.split(",") if n.strip()]
        unknown = [n for n in names if n not in SUPPORTED]
        if unknown:
            raise ParseError(f"unsupported Content-Encoding {', '.join(unknown)}")
        # Encodings are listed in the order applied; decode in reverse.
        self._layers: list[Callable[[bytes, int], bytes]] = [
            _layer(n) for n in reversed(names) if n != "identity"
        ]
        self._max = max_bytes
        self.decoded = 0

    def feed(self, chunk: bytes) -> bytes:
        data = chunk
        for layer in self._layers:
            data = layer(data, self._max - self.decoded + 1)
        self.decoded += len(data)
        if self.decoded > self._max:
            raise TooLargeError(f"body exceeds {self._max} bytes after decompression")
        return data


def _layer(name: str) -> Callable[[bytes, int], bytes]:
    if name == "br":
        return _brotli()
    return _Zlib(16 + zlib.MAX_WBITS if name in ("gzip", "x-gzip") else zlib.MAX_WBITS)


class _Zlib:
    """gzip or deflate; "deflate" is sometimes sent without the zlib header (raw deflate)."""

    def __init__(self, wbits: int) -> None:
        self._inflater = zlib.decompressobj(wbits)
        self._raw_fallback = wbits == zlib.MAX_WBITS

    def __call__(self, data: bytes, budget: int) -> bytes:
        try:
            out = self._inflater.decompress(data, budget)
            while self._inflater.unconsumed_tail and len(out) < budget:
                out += self._inflater.decompress(self._inflater.unconsumed_tail, budget - len(out))
        except zlib.error as exc:
            if self._raw_fallback:
                self._raw_fallback = False
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                return self(data, budget)
            raise ParseError(f"corrupt compressed body: {exc}") from exc
        self._raw_fallback = False
        return out


def _brotli() -> Callable[[bytes, int], bytes]:
    inflater = brotli.Decompressor()

    def decode(data: bytes, budget: int) -> bytes:
        try:
            out = inflater.process(data, output_buffer_limit=budget)
            while not inflater.can_accept_more_data() and len(out) < budget:
                out += inflater.process(b"", output_buffer_limit=budget - len(out))
        except brotli.error as exc:
            raise ParseError(f"corrupt brotli body: {exc}") from exc
        return bytes(out)

    return decode
