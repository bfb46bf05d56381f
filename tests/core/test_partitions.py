from datetime import UTC, datetime

import polars as pl
import pytest

from headrace import DailyPartitions, StaticPartitions
from headrace.core.partitions import parse_partition_range
from headrace.errors import PartitionError

DAYS = DailyPartitions("t", start="2013-01-01", end="2013-01-31")


def test_daily_keys_and_ranges() -> None:
    assert len(DAYS.keys()) == 31
    assert DAYS.expand_range("2013-01-30", "2013-01-31", node="n") == ("2013-01-30", "2013-01-31")


@pytest.mark.parametrize(
    ("key", "message"),
    [("2013-02-01", "outside node 'n'"), ("jan 5", "use the form YYYY-MM-DD")],
)
def test_daily_rejects_bad_keys(key: str, message: str) -> None:
    with pytest.raises(PartitionError, match=message):
        DAYS.validate_key(key, node="n")


def test_daily_filter_selects_exactly_one_utc_day() -> None:
    frame = pl.DataFrame(
        {
            "t": [
                datetime(2013, 1, 4, 23, 59, tzinfo=UTC),
                datetime(2013, 1, 5, 0, 0, tzinfo=UTC),
                datetime(2013, 1, 5, 23, 59, tzinfo=UTC),
                datetime(2013, 1, 6, 0, 0, tzinfo=UTC),
            ]
        }
    )
    assert frame.filter(DAYS.filter("2013-01-05")).height == 2


def test_static_partitions() -> None:
    scheme = StaticPartitions("origin", ["EWR", "JFK", "LGA"])
    assert scheme.expand_range("EWR", "JFK", node="n") == ("EWR", "JFK")
    frame = pl.DataFrame({"origin": ["EWR", "JFK", "EWR"]})
    assert frame.filter(scheme.filter("EWR")).height == 2
    with pytest.raises(PartitionError, match="not one of node 'n'"):
        scheme.validate_key("SFO", node="n")
    with pytest.raises(PartitionError, match="lists a key twice"):
        StaticPartitions("o", ["a", "a"])


def test_range_syntax() -> None:
    assert parse_partition_range("a..b") == ("a", "b")
    with pytest.raises(PartitionError, match=r"FIRST\.\.LAST"):
        parse_partition_range("a-b")
    with pytest.raises(PartitionError, match="swap its ends"):
        DAYS.expand_range("2013-01-05", "2013-01-01", node="n")
