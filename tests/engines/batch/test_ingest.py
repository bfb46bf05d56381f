"""Ingest nodes: files and databases read by connectors, incremental, with quarantine."""

import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.core.records import NodeStatus
from headrace.errors import DatasetError

TRIPS = hr.Contract(
    "trips",
    fields=[
        hr.Field("id", "Int64", nullable=False, unique=True),
        hr.Field("km", "Float64", checks=[hr.checks.between(0, 1000)]),
        hr.Field("city", "String"),
    ],
)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _trips_pipeline(root: Path, **options: object) -> hr.Pipeline:
    pipeline = hr.Pipeline("trips")
    source = hr.files(str(root / "in" / "*.csv"), incremental=True)
    pipeline.ingest("trips", source, **options)  # type: ignore[arg-type]
    pipeline.transform(lambda trips: trips.select(pl.len().alias("n")), name="count")
    return pipeline


def test_new_files_are_appended_and_old_ones_not_read_again(
    project: hr.Project, tmp_path: Path
) -> None:
    _write(tmp_path / "in" / "a.csv", "id,km,city\n1,2.5,Oslo\n2,3.0,Bergen\n")
    pipeline = _trips_pipeline(tmp_path, contract=TRIPS)
    first = project.run(pipeline)
    first.raise_for_status()
    assert project.read("trips").sort("id")["id"].to_list() == [1, 2]
    assert project.read("trips").schema["km"] == pl.Float64  # coerced from the CSV text

    _write(tmp_path / "in" / "b.csv", "id,km,city\n3,4.0,Oslo\n")
    second = project.run(pipeline)
    second.raise_for_status()
    assert project.read("trips").sort("id")["id"].to_list() == [1, 2, 3]
    assert "1 record(s) from 1 part(s)" in second.record("trips").cache_reason

    third = project.run(pipeline)
    third.raise_for_status()
    assert "nothing new" in third.record("trips").cache_reason
    assert third.record("trips").output_version == second.record("trips").output_version
    history = project.dataset_history("trips")
    assert [v.rows_written for v in history] == [1, 2]  # newest first
    assert set(history[0].position["files"]) == {  # type: ignore[index]
        str(tmp_path / "in" / "a.csv"),
        str(tmp_path / "in" / "b.csv"),
    }


def test_bad_records_and_bad_values_are_quarantined_with_file_and_line(
    project: hr.Project, tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "in" / "a.csv",
        "id,km,city\n1,2.5,Oslo\n2,far,Bergen\n3,1.0\n4,5000,Oslo\n5,1.5,Rome\n",
    )
    result = project.run(_trips_pipeline(tmp_path, contract=TRIPS, gate=None))
    result.raise_for_status()
    assert project.read("trips").sort("id")["id"].to_list() == [1, 5]
    quarantine = project.read("trips__quarantine").sort("_hr_line")
    assert quarantine["_hr_line"].to_list() == [3, 4, 5]
    assert set(quarantine["_hr_source"].to_list()) == {str(path)}
    assert quarantine["_hr_rules"].to_list() == [
        ["km.type"],
        ["parse.field_count"],
        ["km.between"],
    ]
    assert quarantine.filter(pl.col("_hr_line") == 4)["_hr_raw"].item() == "3,1.0"
    assert quarantine.filter(pl.col("_hr_line") == 3)["km"].item() == "far"  # as it came in
    (record,) = project.quality(run_id=result.run_id)
    assert (record.rows, record.valid_rows, record.quarantined_rows) == (5, 2, 3)
    assert record.score == pytest.approx(record.score)
    assert record.valid_rows + record.quarantined_rows == record.rows


def test_a_file_that_is_mostly_garbage_fails_the_gate_but_keeps_its_quarantine(
    project: hr.Project, tmp_path: Path
) -> None:
    _write(tmp_path / "in" / "a.csv", "id,km,city\n1,2.5,Oslo\nx\ny\nz\n")
    result = project.run(_trips_pipeline(tmp_path))
    assert result.statuses() == {"trips": NodeStatus.FAILED, "count": NodeStatus.UPSTREAM_FAILED}
    error = result.record("trips").error or ""
    assert "quality gate" in error
    assert "3 record(s) did not parse" in error
    assert not project.datasets.exists("trips")
    assert project.read("trips__quarantine").height == 3


def test_a_crash_between_quarantine_and_rows_neither_duplicates_nor_loses(
    project: hr.Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "in" / "a.csv", "id,km,city\n1,2.5,Oslo\n2,oops,Rome\n")
    pipeline = _trips_pipeline(tmp_path, contract=TRIPS, gate=None)
    real_write = project.datasets.write

    def crash_on_rows(name: str, frame: pl.DataFrame, **kwargs: object) -> object:
        if name == "trips":
            raise DatasetError("disk gone")
        return real_write(name, frame, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(project.datasets, "write", crash_on_rows)
    assert not project.run(pipeline).ok
    assert project.read("trips__quarantine").height == 1
    monkeypatch.undo()

    # New data arrived meanwhile: the retried step reads the same range, then the next one
    # picks up the new file.
    _write(tmp_path / "in" / "b.csv", "id,km,city\n3,1.0,Oslo\n4,nope,Oslo\n")
    project.run(pipeline).raise_for_status()
    assert project.read("trips")["id"].to_list() == [1]
    assert project.read("trips__quarantine")["id"].to_list() == ["2"]
    project.run(pipeline).raise_for_status()
    assert project.read("trips").sort("id")["id"].to_list() == [1, 3]
    assert sorted(project.read("trips__quarantine")["id"].to_list()) == ["2", "4"]


def test_full_refresh_rereads_everything(project: hr.Project, tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.csv", "id,km,city\n1,2.5,Oslo\n")
    pipeline = _trips_pipeline(tmp_path, contract=TRIPS)
    project.run(pipeline).raise_for_status()
    _write(tmp_path / "in" / "b.csv", "id,km,city\n2,2.5,Oslo\n")
    project.run(pipeline, full_refresh=True).raise_for_status()
    assert project.read("trips").sort("id")["id"].to_list() == [1, 2]
    project.run(pipeline).raise_for_status()
    assert project.read("trips").height == 2


def _sqlite(path: Path, rows: list[tuple[int, str, float]]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT, v REAL)")
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)


def test_a_database_cursor_reads_only_new_rows(project: hr.Project, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    _sqlite(db, [(1, "2024-01-01", 1.0), (2, "2024-01-02", 2.0)])
    pipeline = hr.Pipeline("events")
    pipeline.ingest("events", hr.sql(f"sqlite:///{db}", table="events", cursor="id"))
    project.run(pipeline).raise_for_status()
    _sqlite(db, [(3, "2024-01-03", 3.0)])
    result = project.run(pipeline)
    result.raise_for_status()
    assert project.read("events").sort("id")["id"].to_list() == [1, 2, 3]
    newest = project.dataset_version("events")
    assert newest.rows_written == 1
    assert newest.position == {"cursor": {"type": "int", "value": 3}}
    assert json.loads(project.datasets.latest_commit_metadata("events")["headrace.position"]) == {
        "cursor": {"type": "int", "value": 3}
    }
    project.run(pipeline).raise_for_status()
    assert project.read("events").height == 3


def test_sources_declared_in_headrace_toml(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    _write(root / "data" / "a.csv", "id,km,city\n1,2.5,Oslo\n2,x,Rome\n")
    _write(
        root / "contracts" / "trips.yaml",
        "name: trips\nfields:\n  - name: id\n    type: Int64\n  - name: km\n    type: Float64\n",
    )
    _write(
        root / "headrace.toml",
        '[project]\nname = "t"\npipelines = ["pipeline.py"]\n\n'
        '[sources.trips]\ntype = "files"\npath = "data/*.csv"\nincremental = true\n'
        'contract = "contracts/trips.yaml"\n',
    )
    _write(
        root / "pipeline.py",
        "import polars as pl\nimport headrace as hr\n\npipeline = hr.Pipeline('t')\n\n"
        "@pipeline.transform\ndef total(trips: pl.LazyFrame) -> pl.LazyFrame:\n"
        "    return trips.select(pl.col('km').sum())\n",
    )
    with hr.Project.open(root) as proj:
        result = proj.run()
        assert result.statuses() == {
            "trips": NodeStatus.FAILED,
            "total": NodeStatus.UPSTREAM_FAILED,
        }
        assert proj.read("trips__quarantine")["km"].to_list() == ["x"]


def test_without_a_contract_rows_are_stored_batch_by_batch(
    project: hr.Project, tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    _sqlite(db, [(i, "2024-01-01", i / 2) for i in range(5_000)])
    pipeline = hr.Pipeline("events")
    source = hr.sql(f"sqlite:///{db}", table="events", cursor="id", chunk_rows=1_000)
    pipeline.ingest("events", source)
    project.run(pipeline).raise_for_status()
    from deltalake import DeltaTable

    table = DeltaTable(project.datasets.path("events"))
    rows_per_file = table.get_add_actions(flatten=True).column("num_records").to_pylist()
    assert sum(rows_per_file) == 5_000
    assert max(rows_per_file) <= 1_000  # a file per chunk: memory held one chunk at a time
    assert project.read("events").sort("id")["id"].to_list() == list(range(5_000))


def test_a_failed_gate_leaves_no_staged_files_behind(project: hr.Project, tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.csv", "id,km,city\n1,2.5,Oslo\nx\ny\nz\n")
    project.run(_trips_pipeline(tmp_path))
    folder = project.datasets.path("trips")
    assert not list(folder.glob("*.parquet")) if folder.exists() else True


def test_misdeclared_sources_get_one_clear_error(project: hr.Project, tmp_path: Path) -> None:
    from headrace.core.source import source_from_mapping
    from headrace.errors import ConfigError

    with pytest.raises(ConfigError, match=r"source 'x' in headrace.toml has type 'ftp'"):
        source_from_mapping("x", {"type": "ftp", "path": "a"})
    with pytest.raises(ConfigError, match=r"source 'x' in headrace.toml: .*unexpected keyword"):
        source_from_mapping("x", {"type": "sql", "dsn": "sqlite:///a.db", "tabel": "t"})
    missing = hr.Pipeline("missing")
    missing.ingest("gone", hr.files(str(tmp_path / "nowhere" / "*.csv")))
    result = project.run(missing)
    error = result.record("gone").error or ""
    assert "SourceError" in error
    assert "nowhere" in error.splitlines()[0]
    secret = hr.Pipeline("secret")
    secret.ingest("db", hr.sql("postgresql://app:s3cret@127.0.0.1:1/x", table="t", retries=0))
    failed = project.run(secret)
    text = failed.record("db").error or ""
    assert "s3cret" not in text
    assert "***" in text


def test_a_commit_whose_record_was_lost_is_recorded_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 between the Delta commit and its metadata record: the rerun records it."""
    from headrace.storage.metadata import MetadataStore

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text("id\n1\n2\n")
    pipeline = hr.Pipeline("lost")
    pipeline.ingest("rows", hr.files(str(inbox / "*.csv"), incremental=True))
    with hr.Project.create(tmp_path / "p") as project:
        project.run(pipeline).raise_for_status()
        (inbox / "b.csv").write_text("id\n3\n")
        original = MetadataStore.record_dataset_version

        def crash(self: MetadataStore, version: object) -> None:
            raise KeyboardInterrupt  # the process dies right after the Delta commit

        monkeypatch.setattr(MetadataStore, "record_dataset_version", crash)
        with pytest.raises(KeyboardInterrupt):
            project.run(pipeline)
        monkeypatch.setattr(MetadataStore, "record_dataset_version", original)
        assert project.datasets.current_version("rows") == 1  # committed, not recorded
        assert project.read("rows").height == 2
        rerun = project.run(pipeline)
        rerun.raise_for_status()
        assert "nothing new" in rerun.record("rows").cache_reason
        assert sorted(project.read("rows")["id"].to_list()) == [1, 2, 3]
        assert project.dataset_version("rows").version == 1
