"""A channel's feed rate shared by a worker's partitions: never 0 for any positive rate the
rules take, so every partition gets a throttle (a 0.0 share stopped the worker)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from availability.fanout import ChannelThrottle
from streams.fanout import partition_rate


@given(
    rate=st.floats(min_value=0, exclude_min=True, allow_infinity=False, allow_nan=False),
    partitions=st.integers(min_value=1, max_value=1024),
)
@example(rate=5e-324, partitions=4)
@example(rate=1e-320, partitions=8)
def test_every_positive_rate_gives_every_partition_a_throttle(rate: float, partitions: int) -> None:
    share = partition_rate(rate, partitions)

    assert 0 < share <= rate
    ChannelThrottle(share, 0)  # refuses a rate that isn't positive and finite


def test_a_rate_shares_exactly_when_it_can() -> None:
    assert partition_rate(10.0, 4) == 2.5
