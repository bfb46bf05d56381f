"""DatasetStore: versions, time travel, partition overwrites, schema changes and Delta type gaps."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from headrace.core.partitions import DailyPartitions
from headrace.errors import DatasetError, DatasetNotFoundError, DatasetVersionNotFoundError
from headrace.storage.datasets import DatasetStore

DAYS = DailyPartitions("time_hour", start="2013-01-01", end="2013-01-03")


def hourly(day: int, values: list[int]) -> pl.DataFrame:
    """One row per value on 2013-01-``day``, an hour apart (UTC)."""
    return pl.DataFrame(
        {
            "time_hour": [datetime(2013, 1, day, h, tzinfo=UTC) for h in range(len(values))],
            "value": values,
        }
    )


def read(datasets: DatasetStore, name: str, version: int | None = None) -> pl.DataFrame:
    return datasets.scan(name, version).collect().sort("time_hour")


def test_writes_are_numbered_versions_and_old_ones_stay_readable(datasets: DatasetStore) -> None:
    first, second = hourly(1, [1, 2]), hourly(1, [10, 20, 30])

    assert datasets.write("flights", first, commit_metadata={}).version == 0
    assert datasets.write("flights", second, commit_metadata={}).version == 1

    assert datasets.current_version("flights") == 1
    assert_frame_equal(read(datasets, "flights", version=0), first)
    assert_frame_equal(read(datasets, "flights", version=1), second)
    assert_frame_equal(read(datasets, "flights"), second)


def test_write_result_counts_rows(datasets: DatasetStore) -> None:
    datasets.write("flights", pl.concat([hourly(1, [1, 2]), hourly(2, [3])]), commit_metadata={})

    result = datasets.write("flights", hourly(2, [30, 40]), commit_metadata={}, partition=(DAYS, "2013-01-02"))

    assert (result.rows_written, result.total_rows) == (2, 4)
    assert result.bytes > 0
    assert result.schema == {"time_hour": "Datetime(time_unit='us', time_zone='UTC')", "value": "Int64"}


def test_missing_version_names_the_dataset(datasets: DatasetStore) -> None:
    datasets.write("flights", hourly(1, [1]), commit_metadata={})

    with pytest.raises(DatasetVersionNotFoundError, match="'flights' has no version 7"):
        datasets.scan("flights", version=7)


def test_missing_dataset_names_the_dataset(datasets: DatasetStore) -> None:
    assert not datasets.exists("weather")
    assert datasets.current_version("weather") is None

    with pytest.raises(DatasetNotFoundError, match="'weather'"):
        datasets.scan("weather")


def test_commit_metadata_carries_the_headrace_keys(datasets: DatasetStore) -> None:
    given = {"headrace.run_id": "r-1", "headrace.node": "clean", "headrace.code_hash": "abc"}
    datasets.write("flights", hourly(1, [1]), commit_metadata=given)
    datasets.write("flights", hourly(1, [2]), commit_metadata={"headrace.run_id": "r-2"})

    assert datasets.commit_metadata("flights", 0) == given
    assert datasets.commit_metadata("flights", 1) == {"headrace.run_id": "r-2"}
    with pytest.raises(DatasetVersionNotFoundError, match="'flights'"):
        datasets.commit_metadata("flights", 2)


def test_partition_write_replaces_only_its_day(datasets: DatasetStore) -> None:
    day1, day2, day3 = hourly(1, [1, 2]), hourly(2, [3, 4, 5]), hourly(3, [6])
    datasets.write("flights", pl.concat([day1, day2, day3]), commit_metadata={})
    new_day2 = hourly(2, [40])

    result = datasets.write("flights", new_day2, commit_metadata={}, partition=(DAYS, "2013-01-02"))

    assert result.version == 1
    assert_frame_equal(read(datasets, "flights"), pl.concat([day1, new_day2, day3]))
    assert_frame_equal(read(datasets, "flights", 0), pl.concat([day1, day2, day3]))


def test_partition_write_into_a_new_dataset_creates_it(datasets: DatasetStore) -> None:
    result = datasets.write("flights", hourly(2, [1]), commit_metadata={}, partition=(DAYS, "2013-01-02"))

    assert result.version == 0
    assert_frame_equal(read(datasets, "flights"), hourly(2, [1]))


def test_row_outside_the_partition_is_refused(datasets: DatasetStore) -> None:
    datasets.write("flights", pl.concat([hourly(1, [1]), hourly(2, [2])]), commit_metadata={})
    stray = pl.concat([hourly(2, [20]), hourly(3, [30])])

    with pytest.raises(DatasetError, match="'flights' partition 2013-01-02"):
        datasets.write("flights", stray, commit_metadata={}, partition=(DAYS, "2013-01-02"))

    assert datasets.current_version("flights") == 0
    assert_frame_equal(read(datasets, "flights"), pl.concat([hourly(1, [1]), hourly(2, [2])]))


def test_whole_table_write_may_change_the_schema(datasets: DatasetStore) -> None:
    old = hourly(1, [1, 2])
    new = pl.DataFrame({"carrier": ["UA", "AA"], "delay": [1.5, -2.0]})
    datasets.write("flights", old, commit_metadata={})

    datasets.write("flights", new, commit_metadata={})

    assert_frame_equal(datasets.scan("flights").collect().sort("carrier"), new.sort("carrier"))
    assert_frame_equal(read(datasets, "flights", version=0), old)


def test_types_delta_lacks_are_widened(datasets: DatasetStore) -> None:
    frame = pl.DataFrame(
        {
            "count": pl.Series([1, 4_000_000_000], dtype=pl.UInt32),
            "nothing": pl.Series([None, None], dtype=pl.Null),
            "carrier": pl.Series(["UA", "AA"], dtype=pl.Categorical),
        }
    )

    result = datasets.write("odd", frame, commit_metadata={})

    back = datasets.scan("odd").collect()
    assert back.schema == {"count": pl.Int64, "nothing": pl.String, "carrier": pl.String}
    assert back.rows() == [(1, None, "UA"), (4_000_000_000, None, "AA")]
    assert result.schema == {"count": "Int64", "nothing": "String", "carrier": "String"}


@pytest.mark.parametrize(
    "column",
    [
        pl.Series("v", [[1, 200]], dtype=pl.List(pl.UInt8)),
        pl.Series("v", [{"a": 4_000_000_000}], dtype=pl.Struct({"a": pl.UInt32})),
        pl.Series("v", [["UA"]], dtype=pl.List(pl.Categorical)),
        pl.Series("v", [[None]], dtype=pl.List(pl.Null)),
    ],
    ids=["list-uint8", "struct-uint32", "list-categorical", "list-null"],
)
def test_nested_types_delta_lacks_are_widened(datasets: DatasetStore, column: pl.Series) -> None:
    datasets.write("nested", column.to_frame(), commit_metadata={})

    assert datasets.scan("nested").collect()["v"].to_list() == column.to_list()


@pytest.mark.parametrize(
    "column",
    [
        pl.Series("v", [2**64 - 1], dtype=pl.UInt64),
        pl.Series("v", [time(1, 2)]),
        pl.Series("v", [timedelta(hours=1)]),
    ],
    ids=["uint64-above-int64", "time", "duration"],
)
def test_unstorable_values_never_leak_a_library_error(
    datasets: DatasetStore, column: pl.Series
) -> None:
    """Either the value is stored without loss, or a DatasetError names dataset and column."""
    try:
        datasets.write("odd", column.to_frame(), commit_metadata={})
    except DatasetError as exc:
        assert "'odd'" in str(exc)
        assert "'v'" in str(exc) or "column v" in str(exc)
    else:
        assert datasets.scan("odd").collect()["v"].to_list() == column.to_list()
