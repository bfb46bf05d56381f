"""DatasetStore: versions, time travel, partition overwrites, schema changes and Delta type gaps."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

import polars as pl
import pytest
from _crash_writer import DATASET, rows_of
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


def write_error(
    datasets: DatasetStore,
    name: str,
    frame: pl.DataFrame,
    partition: tuple[DailyPartitions, str] | None = None,
) -> str | None:
    """The DatasetError message of writing ``frame``, or None when the write succeeded."""
    try:
        datasets.write(name, frame, commit_metadata={}, partition=partition)
    except DatasetError as exc:
        return str(exc)
    return None


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

    result = datasets.write(
        "flights", hourly(2, [30, 40]), commit_metadata={}, partition=(DAYS, "2013-01-02")
    )

    assert (result.rows_written, result.total_rows) == (2, 4)
    assert result.bytes > 0
    assert result.schema == {
        "time_hour": "Datetime(time_unit='us', time_zone='UTC')",
        "value": "Int64",
    }


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
    result = datasets.write(
        "flights", hourly(2, [1]), commit_metadata={}, partition=(DAYS, "2013-01-02")
    )

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


def test_uint64_above_int64_is_stored_exactly_or_refused(datasets: DatasetStore) -> None:
    """Widening UInt64 to Int64 must never wrap or crash with a Polars error."""
    big = pl.DataFrame({"v": pl.Series([2**64 - 1], dtype=pl.UInt64)})

    error = write_error(datasets, "odd", big)

    if error is None:
        assert datasets.scan("odd").collect()["v"].to_list() == [2**64 - 1]
    else:
        assert "'odd'" in error
        assert "'v'" in error


def test_uint64_column_keeps_one_type_across_partition_writes(datasets: DatasetStore) -> None:
    """Small UInt64 values first, a value above Int64's range later in one partition."""
    small = hourly(1, [1, 2]).with_columns(pl.col("value").cast(pl.UInt64))
    datasets.write("hashes", small, commit_metadata={})
    big = pl.DataFrame(
        {
            "time_hour": [datetime(2013, 1, 2, tzinfo=UTC)],
            "value": pl.Series([2**63], dtype=pl.UInt64),
        }
    )

    error = write_error(datasets, "hashes", big, partition=(DAYS, "2013-01-02"))

    if error is None:
        assert read(datasets, "hashes")["value"].to_list() == [1, 2, 2**63]
    else:
        assert "'hashes'" in error
        assert "'value'" in error


@pytest.mark.parametrize(
    "column",
    [pl.Series("v", [time_of_day(1, 2)]), pl.Series("v", [timedelta(hours=1)])],
    ids=["time", "duration"],
)
def test_time_and_duration_are_widened_or_refused_by_name(
    datasets: DatasetStore, column: pl.Series
) -> None:
    """Delta has no time-of-day or duration type: store them somehow, or say which column."""
    error = write_error(datasets, "odd", column.to_frame())

    if error is None:
        assert datasets.scan("odd").collect()["v"].null_count() == 0
    else:
        assert "'odd'" in error
        assert "'v'" in error


def test_current_version_raises_no_deprecation_warning(datasets: DatasetStore) -> None:
    """pytest turns warnings into errors; deltalake deprecated ``without_files``."""
    datasets.write("flights", hourly(1, [1]), commit_metadata={})

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert datasets.current_version("flights") == 0
        assert datasets.exists("flights")


# -- crash safety ---------------------------------------------------------------------------

CRASH_WRITER = Path(__file__).with_name("_crash_writer.py")
KILLS = 7


def assert_every_version_complete(
    datasets: DatasetStore, rows_by_batch: dict[int, int], seed: int
) -> int | None:
    """Each visible version holds exactly one write's rows, all of them; returns the newest."""
    newest = datasets.current_version(DATASET)
    for version in range(0 if newest is None else newest + 1):
        stats = (
            datasets.scan(DATASET, version)
            .select(rows=pl.len(), lo=pl.col("batch").min(), hi=pl.col("batch").max())
            .collect()
            .row(0, named=True)
        )
        batch = stats["lo"]
        expected = rows_by_batch.get(batch, rows_of(batch))
        assert (stats["hi"], stats["rows"]) == (batch, expected), f"version {version}, seed {seed}"
        assert datasets.commit_metadata(DATASET, version) == {"headrace.batch": str(batch)}
    return newest


def run_writer_until_killed(root: Path, first_batch: int, delay: float, log: Path) -> list[str]:
    """Start the writer, SIGKILL it ``delay`` seconds after it is ready; its stdout lines."""
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(CRASH_WRITER), str(root), str(first_batch)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", log.read_text()
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    lines = proc.stdout.read().splitlines()
    proc.stdout.close()
    return lines


@pytest.mark.slow
def test_kill_9_during_writes_never_exposes_a_partial_version(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    datasets = DatasetStore(tmp_path / "datasets")
    rows_by_batch: dict[int, int] = {}
    batch = 0
    for _ in range(KILLS):
        # A write of ~120 MB takes about a second here: kills land before, inside and after it.
        delay = rng.uniform(0.0, 2.5)
        acked = run_writer_until_killed(
            tmp_path / "datasets", batch, delay, tmp_path / "writer.log"
        )
        batch += 1_000  # the writer never gets that far; later batches stay distinct

        newest = assert_every_version_complete(datasets, rows_by_batch, seed)
        for line in acked:  # every write the writer saw return is there, as it was written
            _, version, written = line.split()
            assert datasets.commit_metadata(DATASET, int(version)) == {"headrace.batch": written}

        rows_by_batch[batch] = batch % 997 + 1
        small = pl.DataFrame({"batch": [batch] * rows_by_batch[batch]})
        result = datasets.write(DATASET, small, commit_metadata={"headrace.batch": str(batch)})
        assert result.version == (0 if newest is None else newest + 1), f"seed {seed}"
        assert datasets.scan(DATASET).select(pl.len()).collect().item() == rows_by_batch[batch]
        batch += 1


def test_zoned_and_nanosecond_timestamps_are_stored_as_utc_microseconds(
    datasets: DatasetStore,
) -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2013, 1, 1, 5, 0, tzinfo=ZoneInfo("America/New_York"))
    frame = pl.DataFrame({"t": [local]}).with_columns(
        ns=pl.col("t").dt.replace_time_zone(None).dt.cast_time_unit("ns")
    )
    datasets.write("times", frame, commit_metadata={})
    stored = datasets.scan("times").collect()
    assert stored.schema["t"] == pl.Datetime("us", "UTC")
    assert stored["t"].to_list() == [local]
    assert stored.schema["ns"] == pl.Datetime("us")
