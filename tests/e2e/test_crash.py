"""kill -9 in the middle of a run: no partial dataset version, and a rerun finishes the work."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.core.records import NodeStatus, RunStatus

ROWS = 2_000_000

PIPELINE = f"""
import os, time
import polars as pl
import headrace as hr

pipeline = hr.Pipeline("crashy")

@pipeline.source(cache=True)
def numbers() -> pl.DataFrame:
    return pl.DataFrame({{"n": range({ROWS})}}).with_columns(
        text=pl.col("n").cast(pl.String) + "-payload-" + pl.col("n").cast(pl.String)
    )

@pipeline.transform
def squared(numbers: pl.LazyFrame) -> pl.LazyFrame:
    marker = os.environ.get("CRASH_MARKER")
    if marker:
        open(marker, "w").close()
        time.sleep(60)
    return numbers.with_columns(sq=pl.col("n") * pl.col("n"))

@pipeline.transform
def total(squared: pl.LazyFrame) -> pl.LazyFrame:
    return squared.select(rows=pl.len(), sq=pl.col("sq").sum())
"""


@pytest.fixture
def crashy(tmp_path: Path) -> Path:
    root = tmp_path / "crashy"
    root.mkdir()
    (root / "headrace.toml").write_text('[project]\nname = "crashy"\npipelines = ["pipeline.py"]\n')
    (root / "pipeline.py").write_text(PIPELINE)
    return root


def _start(root: Path, **env: str) -> subprocess.Popen[bytes]:
    headrace = Path(sys.executable).parent / "headrace"
    return subprocess.Popen(
        [str(headrace), "--project", str(root), "run"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _assert_consistent(project: hr.Project) -> None:
    """Every recorded version reads completely; nothing unrecorded is served."""
    for latest in project.list_datasets():
        for version in project.dataset_history(latest.dataset):
            frame = project.read(version.dataset, version.version)
            assert frame.height == version.total_rows


def test_kill_while_a_node_runs_then_rerun(crashy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "inside-squared"
    process = _start(crashy, CRASH_MARKER=str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None, "run ended before reaching the node"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()

    with hr.Project(crashy) as project:
        assert [d.dataset for d in project.list_datasets()] == ["numbers"]
        assert not project.datasets.exists("squared")
        killed = project.runs()[0]
        assert killed.status is RunStatus.RUNNING

        result = project.run()
        assert result.statuses() == {
            "numbers": NodeStatus.CACHED,
            "squared": NodeStatus.SUCCEEDED,
            "total": NodeStatus.SUCCEEDED,
        }
        assert project.get_run(killed.run_id).status is RunStatus.FAILED
        assert "abandoned" in (project.get_run(killed.run_id).error or "")
        assert len(project.dataset_history("numbers")) == 1
        assert project.read("total")["rows"].to_list() == [ROWS]
        _assert_consistent(project)


@pytest.mark.slow
def test_kill_at_random_moments_then_rerun_without_duplicates(crashy: Path) -> None:
    rng = random.Random(7)
    for _ in range(6):
        process = _start(crashy)
        time.sleep(rng.uniform(0.3, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        with hr.Project(crashy) as project:
            _assert_consistent(project)
    with hr.Project(crashy) as project:
        project.run().raise_for_status()
        _assert_consistent(project)
        squared = project.read("squared")
        assert squared.height == ROWS
        assert squared["n"].n_unique() == ROWS
        expected = pl.DataFrame({"rows": [ROWS]}, schema={"rows": pl.UInt32}).cast(pl.Int64)
        assert project.read("total").select("rows").cast(pl.Int64).equals(expected)
