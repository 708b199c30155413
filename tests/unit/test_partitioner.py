"""The partition of a key, as Kafka's default partitioner picks it: murmur2 against the
vectors of Kafka's own tests, and the remembered partitions against the computed ones."""

from __future__ import annotations

import pytest

from availability import topics
from availability.topics import murmur2, partition_for


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ],
)
def test_murmur2_is_kafkas(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_remembered_partitions_stay_the_computed_ones_across_a_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(topics, "_KNOWN_MOST", 50)
    keys = [f"SKU-{n}".encode() for n in range(120)]
    for partitions in (4, 12):
        computed = [(murmur2(key) & 0x7FFFFFFF) % partitions for key in keys]
        assert [partition_for(key, partitions) for key in keys * 2] == computed * 2
        assert len(topics._known[partitions]) <= 50
