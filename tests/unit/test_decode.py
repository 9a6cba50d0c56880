from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from newswatch.fetcher.decode import CappedDecoder
from newswatch.fetcher.errors import ParseError, TooLargeError

DATA = b"<rss>" + b"news " * 20_000 + b"</rss>"


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda d: zlib.compress(d)[2:-4]),  # raw deflate, no zlib header
        ("br", brotli.compress),
        ("", lambda d: d),
        ("identity", lambda d: d),
    ],
)
def test_round_trip(encoding: str, compress: object) -> None:
    decoder = CappedDecoder(encoding, 1_000_000)
    assert b"".join(decoder.feed(c) for c in chunks(compress(DATA))) == DATA  # type: ignore[operator]


def test_layered_encodings_decode_in_reverse() -> None:
    body = brotli.compress(gzip.compress(DATA))
    assert CappedDecoder("gzip, br", 1_000_000).feed(body) == DATA


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("br", brotli.compress)])
def test_bomb_is_cut_off_without_inflating_it(encoding: str, compress: object) -> None:
    bomb = compress(b"\0" * 30_000_000)  # type: ignore[operator]
    assert len(bomb) < 1_000_000
    decoder = CappedDecoder(encoding, 1_000_000)
    largest = []

    def feed_all() -> None:
        for chunk in chunks(bomb, 65536):
            largest.append(len(decoder.feed(chunk)))

    with pytest.raises(TooLargeError, match="after decompression"):
        feed_all()
    assert max(largest, default=0) <= 1_000_001  # never more than the budget at once


def test_errors() -> None:
    with pytest.raises(ParseError, match="unsupported Content-Encoding zstd"):
        CappedDecoder("zstd", 10)
    with pytest.raises(ParseError, match="corrupt compressed body"):
        CappedDecoder("gzip", 1000).feed(b"\x1f\x8bnot gzip at all")
