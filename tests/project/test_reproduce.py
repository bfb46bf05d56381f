"""``reproduce``: re-execute a run on its exact inputs and prove the outputs identical."""

from __future__ import annotations

from pathlib import Path

import pytest

import headrace as hr
from headrace.cli.app import main
from headrace.errors import ReproductionError

PIPELINE = """
import polars as pl
import headrace as hr

pipeline = hr.Pipeline("rep")
DAYS = hr.DailyPartitions("day", start="2024-01-01", end="2024-01-02")


@pipeline.source(cache=True, config=["data"])
def raw(data: str) -> pl.LazyFrame:
    return pl.scan_csv(data, try_parse_dates=True)


@pipeline.transform(ephemeral=True)
def doubled(raw: pl.LazyFrame) -> pl.LazyFrame:
    return raw.with_columns(y=pl.col("x") * FACTOR)


@pipeline.transform(partitions=DAYS)
def by_day(doubled: pl.LazyFrame) -> pl.LazyFrame:
    return doubled.select("day", "k", "y")


pipeline.sql("totals", "SELECT k, sum(y) AS total FROM by_day GROUP BY k")
pipeline.features(hr.FeatureView(
    "k_stats", entity=hr.Entity("k", ["k"]), source="by_day", event_time="day", ttl="7d",
    features=[hr.Aggregate("y", "sum", "2d")],
))


@pipeline.sink
def printed(totals: pl.DataFrame) -> None:
    print(totals)
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "rep"
    root.mkdir()
    (root / "data.csv").write_text("day,k,x\n2024-01-01,a,1\n2024-01-02,a,2\n2024-01-02,b,5\n")
    (root / "headrace.toml").write_text(
        '[project]\nname = "rep"\npipelines = ["pipeline.py"]\n[config]\ndata = "data.csv"\n'
    )
    (root / "pipeline.py").write_text(PIPELINE.replace("FACTOR", "2"))
    return root


def test_a_run_reproduces_identically(folder: Path) -> None:
    with hr.Project(folder) as project:
        run = project.run(config={"data": str(folder / "data.csv")})
        run.raise_for_status()
        found = project.reproduce(run.run_id)
        outcomes = {(c.node, c.partition): c.outcome for c in found.checks}
        assert outcomes == {
            ("raw", None): "identical",
            ("doubled", None): "skipped",  # in memory: re-computed as an input, not stored
            ("by_day", None): "identical",  # a full run computes every partition at once
            ("totals", None): "identical",
            ("k_stats", None): "identical",
            ("printed", None): "skipped",
        }
        assert found.identical
        assert (found.scratch / "totals.parquet").exists()


def test_changed_code_is_refused_or_shows_the_first_difference(folder: Path) -> None:
    with hr.Project(folder) as project:
        run = project.run(config={"data": str(folder / "data.csv")})
        run.raise_for_status()
    (folder / "pipeline.py").write_text(PIPELINE.replace("FACTOR", "3"))
    with hr.Project(folder) as project:
        with pytest.raises(ReproductionError, match=r"code of node\(s\) doubled changed"):
            project.reproduce(run.run_id)
        found = project.reproduce(run.run_id, allow_code_change=True)
        assert not found.identical
        first = found.first_difference
        assert first is not None
        assert first.node == "by_day"
        assert "first differing row" in first.detail
        assert '"y":2' in first.detail


def test_a_partition_run_reproduces_per_partition(folder: Path) -> None:
    with hr.Project(folder) as project:
        project.run(config={"data": str(folder / "data.csv")}).raise_for_status()
        run = project.run(partitions=["2024-01-02"], config={"data": str(folder / "data.csv")})
        run.raise_for_status()
        found = project.reproduce(run.run_id)
        by_day = next(c for c in found.checks if c.node == "by_day")
        assert (by_day.partition, by_day.outcome) == ("2024-01-02", "identical")


def test_changed_input_data_is_reported(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with hr.Project(folder) as project:
        run = project.run(config={"data": str(folder / "data.csv")})
        run.raise_for_status()
    (folder / "data.csv").write_text("day,k,x\n2024-01-01,a,1\n")  # the source changed since
    assert main(["reproduce", run.run_id, "--project", str(folder)]) == 1
    captured = capsys.readouterr()
    assert "raw" in captured.out
    assert "row count differs: stored 3, re-computed 1" in captured.err
    # the downstream nodes still reproduce: they read the recorded versions, not the source
    assert captured.out.count("identical") >= 3
