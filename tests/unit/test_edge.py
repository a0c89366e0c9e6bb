"""``bot.edge.Inflater``: a compressed body inflated piece by piece, never past its limit."""

from __future__ import annotations

import zlib

import pytest

from bot import edge


def gzip_of(data: bytes) -> bytes:
    return zlib.compress(data, wbits=16 + zlib.MAX_WBITS)


def test_a_bomb_stops_the_inflater_at_the_limit_having_read_a_sliver_of_it() -> None:
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    bomb = b"".join([*(pack.compress(block) for _ in range(64)), pack.flush()])  # 64 MiB
    inflater = edge.Inflater("gzip", limit=1 << 18)
    fed = 0
    with pytest.raises(edge.TooLarge):
        for start in range(0, len(bomb), 1024):
            inflater.feed(bomb[start : start + 1024])
            fed += 1024
    assert inflater.size <= (1 << 18) + edge.CHUNK  # about the limit, not 64 MiB
    assert fed < len(bomb) // 50  # stopped within the first 2% of what was sent


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", gzip_of(b'{"a": 1}')),
        ("gzip", gzip_of(b'{"a": ') + gzip_of(b"1}")),  # two members, as gzip -d reads them
        ("deflate", zlib.compress(b'{"a": 1}')),  # zlib-wrapped, as the RFC says
        ("deflate", zlib.compress(b'{"a": 1}', wbits=-zlib.MAX_WBITS)),  # raw, as many send
    ],
    ids=["gzip", "gzip-members", "deflate-zlib", "deflate-raw"],
)
def test_what_senders_compress_inflates_whole(encoding: str, data: bytes) -> None:
    inflater = edge.Inflater(encoding, limit=1024)
    for byte in range(len(data)):  # the worst split: a byte at a time
        inflater.feed(data[byte : byte + 1])
    assert inflater.result() == b'{"a": 1}'


def test_compressed_data_cut_short_or_garbled_is_an_error() -> None:
    inflater = edge.Inflater("gzip", limit=1024)
    inflater.feed(gzip_of(b'{"a": 1}' * 10)[:-12])
    with pytest.raises(zlib.error):
        inflater.result()
    with pytest.raises(zlib.error):
        edge.Inflater("gzip", limit=1024).feed(b"not gzip at all")
