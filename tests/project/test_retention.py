"""Retention: vacuum removes old versions, never the newest nor referenced ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.cli.app import main
from headrace.errors import DatasetVersionNotFoundError

PIPELINE = """
from datetime import UTC, datetime

import polars as pl
import headrace as hr

pipeline = hr.Pipeline("keep")


@pipeline.source(config=["n"])
def events(n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "user": ["a"] * int(n),
        "ts": [datetime(2024, 1, 1, i, tzinfo=UTC) for i in range(int(n))],
    })


pipeline.features(hr.FeatureView(
    "activity", entity=hr.Entity("user", ["user"]), source="events", event_time="ts",
    ttl="30d", features=[hr.Aggregate(None, "count", "1d", name="n_1d")],
))
pipeline.feature_set(hr.FeatureSet("act", ["activity:n_1d"]))
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "keep"
    root.mkdir()
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "headrace.toml").write_text(
        '[project]\nname = "keep"\npipelines = ["pipeline.py"]\n'
        "[retention]\nkeep_versions = 1\n"
        "[retention.datasets.events]\nkeep_versions = 2\n"
    )
    return root


def test_vacuum_keeps_newest_policy_and_referenced_versions(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with hr.Project(folder) as project:
        for n in (1, 2, 3, 4):
            project.run(config={"n": n}).raise_for_status()
            if n == 2:
                rows = pl.DataFrame(
                    {"user": ["a"], "event_timestamp": [datetime(2024, 1, 2, tzinfo=UTC)]}
                )
                project.features.get_training_data(rows, "act")  # reads activity v1
        before = project.read("activity", 1)
        capsys.readouterr()
        assert main(["datasets", "vacuum", "--dry-run", "--project", str(folder)]) == 0
        assert "dry run" in capsys.readouterr().out
        assert project.read("activity", 0).height == 1  # a dry run removes nothing

        results = {plan.dataset: (plan, result) for plan, result in project.vacuum()}
        plan, result = results["activity"]
        assert plan.keep[3] == "newest"
        assert plan.keep[1].startswith("referenced by training set")
        # incremental feature versions share their older files with the newer ones: none of
        # them becomes unreadable, so nothing is removed (only unshared files ever go)
        assert result.versions == []
        assert project.read("activity", 0).height == 1
        events_plan, events_result = results["events"]
        assert sorted(events_plan.keep) == [2, 3]  # its own policy: the newest two
        assert events_result.versions == [0, 1]  # each run rewrote the source whole
        assert events_result.bytes > 0

        assert project.read("activity", 1).equals(before)  # referenced: still readable
        assert project.read("events").height == 4
        assert project.read("events", 2).height == 3
        with pytest.raises(DatasetVersionNotFoundError, match="removed by its retention policy"):
            project.read("events", 1)
        again = {plan.dataset: result for plan, result in project.vacuum()}
        assert again["events"].versions == []  # idempotent


def test_without_limits_nothing_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "headrace.toml").write_text('[project]\nname = "p"\npipelines = ["pipeline.py"]\n')
    with hr.Project(root) as project:
        for n in (1, 2):
            project.run(config={"n": n}).raise_for_status()
        assert all(not result.versions for _, result in project.vacuum())
        assert project.read("events", 0).height == 1
