"""Version-level lineage from the run records: upstream, downstream, renderings, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.cli.app import main
from headrace.errors import DatasetNotFoundError


def _pipeline() -> hr.Pipeline:
    p = hr.Pipeline("lin")

    @p.source(cache=True)
    def raw() -> pl.DataFrame:
        return pl.DataFrame({"k": [1, 2, 3], "x": [1.0, 2.0, 3.0]})

    @p.transform(ephemeral=True)
    def scaled(raw: pl.LazyFrame, factor: int = 2) -> pl.LazyFrame:
        return raw.with_columns(pl.col("x") * factor)

    p.sql("summed", "SELECT k, sum(x) AS total FROM scaled GROUP BY k")

    @p.transform
    def report(summed: pl.LazyFrame, raw: pl.LazyFrame) -> pl.LazyFrame:
        return summed.join(raw, on="k")

    return p


def test_upstream_and_downstream_follow_the_versions_each_run_read(tmp_path: Path) -> None:
    with hr.Project.create(tmp_path) as project:
        first = project.run(_pipeline())
        first.raise_for_status()
        second = project.run(_pipeline(), config={"factor": 3})  # new summed, report; same raw
        second.raise_for_status()

        graph = project.lineage("report")  # the newest: version 1
        keys = set(graph.items)
        assert graph.root.key == "dataset:report@1"
        assert {"dataset:summed@1", "dataset:raw@0", "memory:scaled@" + second.run_id} <= keys
        assert "dataset:summed@0" not in keys  # the older version is not upstream of v1
        assert graph.parents("dataset:report@1") == [
            "dataset:raw@0",
            "dataset:summed@1",
        ]
        assert graph.items["dataset:summed@1"].run_id == second.run_id
        assert graph.items["dataset:summed@1"].code_hash  # which code made it

        impact = project.lineage("raw", 0, upstream=False)
        touched = {k for k in impact.items if k.startswith("dataset:")}
        assert touched == {
            "dataset:raw@0",
            "dataset:summed@0",
            "dataset:summed@1",
            "dataset:report@0",
            "dataset:report@1",
        }
        text = graph.to_text()
        assert text.splitlines()[0].startswith("report v1  (run ")
        assert "└── " in text
        assert "-->" in graph.to_mermaid()
        assert "digraph lineage" in graph.to_dot()
        page = graph.to_html()
        assert page.startswith("<!doctype html>")
        assert "<svg" in page
        assert "<script" not in page
        with pytest.raises(DatasetNotFoundError, match="no recorded version 9 of dataset 'report'"):
            project.lineage("report", 9)


def test_downstream_reaches_feature_sets_and_training_sets(feature_project: Path) -> None:
    with hr.Project(feature_project) as project:
        project.run().raise_for_status()
        rows = pl.select(
            user=pl.lit("ada"), event_timestamp=pl.datetime(2024, 3, 2, time_zone="UTC")
        )
        built = project.features.get_training_data(rows, "fraud")
        graph = project.lineage("payments", upstream=False)
        assert "dataset:spend@0" in graph.items
        assert "feature_set:fraud@1" in graph.items
        assert any(
            item.kind == "training_set" and item.name == built.record.training_set_id
            for item in graph.items.values()
        )


def test_cli_prints_a_tree_or_writes_a_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    with hr.Project.create(folder) as project:
        project.run(_pipeline()).raise_for_status()
    capsys.readouterr()
    assert main(["lineage", "report", "--project", str(folder)]) == 0
    assert "upstream (what it was made from):" in capsys.readouterr().out
    page = tmp_path / "lineage.html"
    assert main(["lineage", "raw", "--downstream", "-f", "html", "-o", str(page),
                 "--project", str(folder)]) == 0  # fmt: skip
    assert "<svg" in page.read_text()
    capsys.readouterr()
    assert main(["lineage", "summed", "-f", "json", "--project", str(folder)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["root"] == "dataset:summed@0"


def test_column_lineage_narrows_to_what_one_column_comes_from_and_feeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = hr.Pipeline("cols")

    @p.source(cache=True)
    def orders() -> pl.DataFrame:
        return pl.DataFrame({"user": ["a", "b"], "amount": [1.0, 2.0], "note": ["x", "y"]})

    @p.source(cache=True)
    def users() -> pl.DataFrame:
        return pl.DataFrame({"user": ["a", "b"], "country": ["fr", "de"]})

    p.sql(
        "spend",
        "SELECT o.user, u.country, sum(o.amount) AS total "
        "FROM orders o JOIN users u ON o.user = u.user GROUP BY o.user, u.country",
    )
    p.sql("by_country", "SELECT country, sum(total) AS total FROM spend GROUP BY country")
    with hr.Project.create(tmp_path) as project:
        project.run(p).raise_for_status()
        up = project.lineage("by_country", column="total", downstream=False)
        spend = up.items["dataset:spend@0"]
        assert spend.columns == ("total",)
        assert up.items["dataset:orders@0"].columns == ("amount",)
        assert "dataset:users@0" not in up.items  # no users column flows into total
        down = project.lineage("orders", column="note", upstream=False)
        assert set(down.items) == {"dataset:orders@0"}  # note feeds nothing
        down = project.lineage("users", column="country", upstream=False)
        assert down.items["dataset:by_country@0"].columns == ("country",)
    capsys.readouterr()
    assert main(["lineage", "by_country", "--column", "total", "--project", str(tmp_path)]) == 0
    assert "orders v0 [amount]" in capsys.readouterr().out
