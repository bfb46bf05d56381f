from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.errors import (
    ConfigError,
    DatasetNotFoundError,
    MetadataError,
    ProjectNotFoundError,
    UnknownNodeError,
)


def _write_project(root: Path, body: str) -> hr.Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "headrace.toml").write_text('[project]\nname = "t"\npipelines = ["pipeline.py"]\n')
    (root / "pipeline.py").write_text(body)
    return hr.Project(root)


PIPELINE = """
import polars as pl
import headrace as hr
from helpers import ROWS

pipeline = hr.Pipeline("numbers")

@pipeline.source
def numbers() -> pl.DataFrame:
    return pl.DataFrame({"n": ROWS})
"""


def test_open_finds_the_project_from_a_subfolder(tmp_path: Path) -> None:
    _write_project(tmp_path / "proj", PIPELINE)
    (tmp_path / "proj" / "sub" / "deeper").mkdir(parents=True)
    assert hr.Project.open(tmp_path / "proj" / "sub" / "deeper").root == tmp_path / "proj"


def test_open_without_a_project_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFoundError, match="headrace init"):
        hr.Project.open(tmp_path)


def test_pipeline_modules_load_with_their_sibling_modules(tmp_path: Path) -> None:
    project = _write_project(tmp_path / "proj", PIPELINE)
    (tmp_path / "proj" / "helpers.py").write_text("ROWS = [1, 2, 3]\n")
    with project:
        assert list(project.pipelines) == ["numbers"]
        project.run().raise_for_status()
        assert project.read("numbers")["n"].to_list() == [1, 2, 3]


def test_broken_pipeline_module_is_one_clear_error(tmp_path: Path) -> None:
    project = _write_project(tmp_path / "proj", "import no_such_module_here\n")
    with pytest.raises(
        ConfigError, match=r"importing pipeline module 'pipeline.py' failed: ModuleNotFoundError"
    ):
        project.pipeline()


def test_unknown_pipeline_and_dataset_name_what_exists(tmp_path: Path) -> None:
    project = _write_project(tmp_path / "proj", PIPELINE)
    (tmp_path / "proj" / "helpers.py").write_text("ROWS = [1]\n")
    with project:
        with pytest.raises(UnknownNodeError, match=r"no pipeline 'nope' \(it has: numbers\)"):
            project.pipeline("nope")
        with pytest.raises(DatasetNotFoundError, match="no dataset 'nope'"):
            project.read("nope")


def test_unreachable_metadata_server_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    (tmp_path / "headrace.toml").write_text(
        '[metadata]\nurl = "postgresql+psycopg://app:hunter2@127.0.0.1:1/nowhere"\n'
    )
    project = hr.Project(tmp_path)
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: pl.DataFrame({"a": [1]}), name="a")
    with pytest.raises(MetadataError) as info:
        project.run(pipeline)
    message = str(info.value)
    assert "hunter2" not in message
    assert "app:***@127.0.0.1:1" in message
    assert "HEADRACE_METADATA_URL" in message


@pytest.mark.postgres
def test_runs_record_into_postgresql(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_METADATA_URL", postgres_url)
    with hr.Project.create(tmp_path / "proj") as project:
        assert project.metadata_url == postgres_url
        pipeline = hr.Pipeline("p")
        pipeline.source(lambda: pl.DataFrame({"a": [1, 2]}), name="a", cache=True)
        first = project.run(pipeline)
        second = project.run(pipeline)
        assert second.record("a").cache_hit
        assert [r.run_id for r in project.runs()] == [second.run_id, first.run_id]
        assert project.dataset_version("a").total_rows == 2


def test_secrets_never_reach_run_records_or_errors(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")

    def connect(db_url: str, api_token: str) -> None:
        raise ConnectionError(f"cannot reach {db_url}")

    pipeline.source(connect, name="remote", config=["db_url", "api_token"], ephemeral=True)
    result = project.run(
        pipeline, config={"db_url": "postgresql://app:hunter2@db/x", "api_token": "tok-123"}
    )
    stored = project.get_run(result.run_id)
    text = repr(stored.to_dict())
    assert "hunter2" not in text
    assert "tok-123" not in text
    assert stored.config == {"db_url": "postgresql://app:***@db/x", "api_token": "***"}
    assert "postgresql://app:***@db/x" in (stored.nodes[0].error or "")


def test_schema_changes_between_dataset_versions_are_classified(project: hr.Project) -> None:
    pipeline = hr.Pipeline("evolving")
    frames = iter(
        [
            pl.DataFrame({"id": [1], "n": pl.Series([1], dtype=pl.Int32), "gone": ["x"]}),
            pl.DataFrame({"id": [1], "n": pl.Series([1], dtype=pl.Int64), "new": [2.0]}),
        ]
    )
    pipeline.source(lambda: next(frames), name="data")
    project.run(pipeline).raise_for_status()
    assert project.schema_changes("data") == []
    project.run(pipeline).raise_for_status()
    changes = {(c.column, c.kind, c.breaking) for c in project.schema_changes("data")}
    assert changes == {
        ("n", "type widened", False),
        ("gone", "dropped", True),
        ("new", "added", False),
    }
    assert project.schema_changes("data", version=0) == []
