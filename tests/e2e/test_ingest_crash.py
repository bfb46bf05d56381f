"""kill -9 during incremental ingestion: a rerun neither skips nor duplicates a record."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

import headrace as hr

FILES_PER_ROUND = 6
ROWS_PER_FILE = 40_000
DB_ROWS_PER_ROUND = 150_000

SETTINGS = """
[project]
name = "feeds"
pipelines = ["pipeline.py"]

[sources.readings]
type = "files"
path = "inbox/*.csv"
incremental = true
contract = "readings.yaml"
gate = 0.5

[sources.events]
type = "sql"
dsn = "sqlite:///events.db"
table = "events"
cursor = "id"
chunk_rows = 50000
"""

CONTRACT = """
name: readings
fields:
  - name: id
    type: Int64
    nullable: false
  - name: value
    type: Float64
"""

PIPELINE = """
import polars as pl
import headrace as hr

pipeline = hr.Pipeline("feeds")

@pipeline.transform
def summary(readings: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
    return readings.select(n=pl.len()).join(events.select(m=pl.len()), how="cross")
"""


def _round(root: Path, number: int) -> tuple[set[int], int]:
    """Add files (every 100th line bad) and database rows; return the good ids, bad lines."""
    good: set[int] = set()
    bad = 0
    for f in range(FILES_PER_ROUND):
        lines = ["id,value"]
        for i in range(ROWS_PER_FILE):
            key = (number * FILES_PER_ROUND + f) * ROWS_PER_FILE + i
            if i % 100 == 99:
                lines.append(f"{key},{i},extra-field")
                bad += 1
            else:
                lines.append(f"{key},{i}.5")
                good.add(key)
        path = root / "inbox" / f"r{number:02d}-{f}.csv"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)  # a file appears whole, as a producer should deliver it
    start = number * DB_ROWS_PER_ROUND
    with sqlite3.connect(root / "events.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, v REAL)")
        db.executemany(
            "INSERT INTO events VALUES (?, ?)",
            ((i, i / 2) for i in range(start, start + DB_ROWS_PER_ROUND)),
        )
    return good, bad


def _start(root: Path) -> subprocess.Popen[bytes]:
    headrace = Path(sys.executable).parent / "headrace"
    return subprocess.Popen(
        [str(headrace), "--project", str(root), "run"],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_during_incremental_ingest_then_rerun(tmp_path: Path) -> None:
    root = tmp_path / "feeds"
    (root / "inbox").mkdir(parents=True)
    (root / "headrace.toml").write_text(SETTINGS)
    (root / "readings.yaml").write_text(CONTRACT)
    (root / "pipeline.py").write_text(PIPELINE)
    rng = random.Random(11)
    good: set[int] = set()
    bad = 0
    for number in range(4):
        new_good, new_bad = _round(root, number)
        good |= new_good
        bad += new_bad
        process = _start(root)
        time.sleep(rng.uniform(0.5, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait()

    with hr.Project(root) as project:
        project.run().raise_for_status()
        readings = project.read("readings")
        assert readings.height == len(good)  # no duplicates ...
        assert set(readings["id"].to_list()) == good  # ... and nothing missing
        quarantine = project.read("readings__quarantine")
        assert quarantine.height == bad
        assert quarantine.select(["_hr_source", "_hr_line"]).is_unique().all()
        events = project.read("events")
        assert events.height == 4 * DB_ROWS_PER_ROUND
        assert events["id"].n_unique() == events.height
        assert project.read("summary").row(0) == (len(good), 4 * DB_ROWS_PER_ROUND)
        for latest in project.list_datasets():
            for version in project.dataset_history(latest.dataset):
                frame = project.read(version.dataset, version.version)
                assert frame.height == version.total_rows
        assert pl.Series(readings["value"]).dtype == pl.Float64
