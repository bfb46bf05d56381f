"""Feature-view nodes: computed into a Delta dataset, incrementally when the source grows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.engines.compute.features import compute_view, view_input
from headrace.errors import FeatureDefinitionError

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _events(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user": [r[0] for r in rows],
            "ts": [(T0 + timedelta(hours=r[1])).isoformat() for r in rows],
            "amount": [r[2] for r in rows],
        }
    )


def _pipeline(folder: Path, window: str = "6h") -> tuple[hr.Pipeline, hr.FeatureView]:
    pipeline = hr.Pipeline("shop")
    pipeline.ingest(
        "payments",
        hr.files(str(folder / "*.csv"), incremental=True),
        contract=hr.Contract(
            "payments",
            fields=[
                hr.Field("user", "String"),
                hr.Field("ts", "Datetime[UTC]"),
                hr.Field("amount", "Float64"),
            ],
        ),
    )
    view = pipeline.features(
        hr.FeatureView(
            "user_spend",
            entity=hr.Entity("user", ["user"]),
            source="payments",
            event_time="ts",
            ttl="2d",
            features=[
                hr.Aggregate("amount", "sum", window),
                hr.Aggregate("amount", "max", "1d"),
                hr.Aggregate(None, "count", window, name="payments_n"),
            ],
        )
    )
    pipeline.feature_set(hr.FeatureSet("fraud", ["user_spend:payments_n"]))
    return pipeline, view


def _full(project: hr.Project, view: hr.FeatureView) -> pl.DataFrame:
    source = view_input(view, project.scan("payments"), what="payments")
    return compute_view(view, source).frame


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns)


def test_appended_and_late_rows_are_computed_incrementally_and_equal_a_full_compute(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _events([("a", 0, 1.0), ("a", 2, 2.0), ("b", 3, 5.0), ("a", 30, 7.0)]).write_csv(
        inbox / "1.csv"
    )
    pipeline, view = _pipeline(inbox)
    with hr.Project.create(tmp_path / "p") as project:
        project.run(pipeline).raise_for_status()
        assert _sorted(project.read("user_spend")).equals(_sorted(_full(project, view)))

        # new rows, one of them late (event time before rows already computed)
        _events([("a", 31, 1.5), ("b", 4, 2.5), ("c", 40, 9.0)]).write_csv(inbox / "2.csv")
        result = project.run(pipeline)
        result.raise_for_status()
        record = result.record("user_spend")
        assert "incremental from 2024-03-01T04:00:00+00:00" in record.cache_reason
        # the run records which version of each input it read (lineage, reproduce)
        assert record.inputs == {"payments": project.dataset_version("payments").version}
        stored = project.get_run(result.run_id).nodes
        assert next(n for n in stored if n.node == "user_spend").inputs == record.inputs
        assert record.rows_out == 4  # b@4, a@30, a@31, c@40: everything from the late row on
        assert _sorted(project.read("user_spend")).equals(_sorted(_full(project, view)))
        assert project.read("user_spend").height == 7


def test_a_changed_view_is_a_new_version_and_the_old_data_stays_readable(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _events([("a", 0, 1.0), ("a", 5, 2.0)]).write_csv(inbox / "1.csv")
    with hr.Project.create(tmp_path / "p") as project:
        first, _ = _pipeline(inbox, window="6h")
        project.run(first).raise_for_status()
        old = project.features.feature_set("fraud")
        second, _ = _pipeline(inbox, window="1h")
        result = project.run(second)
        result.raise_for_status()
        new = project.features.feature_set("fraud")
        assert (old.version, new.version) == (1, 2)
        assert old.view_versions == {"user_spend": 1}
        assert new.view_versions == {"user_spend": 2}
        assert "code changed" in result.record("user_spend").cache_reason
        rows = pl.DataFrame({"user": ["a"], "event_timestamp": [T0 + timedelta(hours=5)]})
        before = project.features.get_training_data(rows, "fraud", version=1).frame
        after = project.features.get_training_data(rows, "fraud").frame
        assert before["user_spend__payments_n"].to_list() == [2]
        assert after["user_spend__payments_n"].to_list() == [1]


def test_an_unchanged_source_recomputes_nothing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _events([("a", 0, 1.0)]).write_csv(inbox / "1.csv")
    pipeline, _ = _pipeline(inbox)
    with hr.Project.create(tmp_path / "p") as project:
        project.run(pipeline).raise_for_status()
        versions = len(project.dataset_history("user_spend"))
        project.run(pipeline).raise_for_status()
        assert len(project.dataset_history("user_spend")) == versions


def test_a_view_whose_source_lacks_the_event_time_column_fails_at_plan_time(
    tmp_path: Path,
) -> None:
    pipeline = hr.Pipeline("p")

    @pipeline.source
    def clicks() -> pl.DataFrame:
        return pl.DataFrame({"user": ["a"], "when": [T0]})

    pipeline.features(
        hr.FeatureView(
            "clicks_1h",
            entity=hr.Entity("user", ["user"]),
            source="clicks",
            event_time="ts",
            ttl="1d",
            features=[hr.Aggregate(None, "count", "1h")],
        )
    )
    with hr.Project.create(tmp_path) as project:
        result = project.run(pipeline)  # first run: the source's schema is only known now
        failed = result.record("clicks_1h")
        assert "has no event-time column 'ts'" in (failed.error or "")
        with pytest.raises(FeatureDefinitionError, match=r"'clicks_1h'.*event-time column 'ts'"):
            project.prepare_run(pipeline)  # now the stored schema tells before anything runs


def test_a_rewritten_partition_recomputes_from_its_first_event(tmp_path: Path) -> None:
    days = hr.DailyPartitions("ts", start="2024-03-01", end="2024-03-04")
    amounts = {"2024-03-02": 1.0}
    pipeline = hr.Pipeline("parts")

    @pipeline.source(partitions=days)
    def payments(context: hr.NodeContext) -> pl.DataFrame:
        rows = [
            (user, T0 + timedelta(days=d, hours=h), amounts.get(f"2024-03-0{d + 1}", 5.0))
            for d in range(4)
            for user in ("a", "b")
            for h in (1, 13)
        ]
        frame = pl.DataFrame(rows, schema=["user", "ts", "amount"], orient="row")
        return frame.filter(context.partition_filter())

    view = pipeline.features(
        hr.FeatureView(
            "spend",
            entity=hr.Entity("user", ["user"]),
            source="payments",
            event_time="ts",
            ttl="3d",
            features=[hr.Aggregate("amount", "sum", "2d", name="spend_2d")],
        )
    )
    with hr.Project.create(tmp_path / "p") as project:
        project.run(pipeline).raise_for_status()
        amounts["2024-03-02"] = 100.0
        result = project.run(pipeline, partitions=["2024-03-02"])
        result.raise_for_status()
        assert "incremental from 2024-03-02T01:00:00+00:00" in result.record("spend").cache_reason
        assert result.record("spend").rows_out == 12  # days 2..4, 2 users x 2 rows each
        full = compute_view(view, view_input(view, project.scan("payments"), what="p")).frame
        assert _sorted(project.read("spend")).equals(_sorted(full))
        assert (
            project.read("spend")
            .filter(pl.col("ts") == T0 + timedelta(days=2, hours=1))["spend_2d"]
            .to_list()
            == [5.0 + 100.0 + 100.0 + 5.0] * 2
        )
