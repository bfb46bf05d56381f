from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.core.records import NodeStatus
from headrace.errors import PipelineError

ORDERS = hr.Contract(
    "orders",
    fields=[
        hr.Field("id", "Int64", nullable=False, unique=True),
        hr.Field("amount", "Float64", checks=[hr.checks.between(0, 100)]),
    ],
)


def _pipeline(rows: dict[str, list[object]], gate: float | None = 0.5) -> hr.Pipeline:
    pipeline = hr.Pipeline("shop")
    frame = pl.DataFrame(rows, schema={"id": pl.Int64, "amount": pl.Float64})
    pipeline.source(lambda: frame, name="orders", contract=ORDERS, gate=gate)
    pipeline.transform(lambda orders: orders.select(pl.col("amount").sum()), name="total")
    return pipeline


def test_a_contract_splits_the_output_and_stores_the_quarantine(project: hr.Project) -> None:
    result = project.run(_pipeline({"id": [1, 2, 2, None], "amount": [5.0, 500.0, 1.0, 2.0]}))
    assert result.ok
    assert project.read("orders")["id"].to_list() == [1]
    quarantine = project.read("orders__quarantine").sort("_hr_row")
    assert quarantine["_hr_row"].to_list() == [1, 2, 3]
    assert quarantine["_hr_rules"].to_list() == [
        ["id.unique", "amount.between"],
        ["id.unique"],
        ["id.not_null"],
    ]
    assert project.read("orders").height + quarantine.height == 4
    assert "3 row(s) quarantined" in result.record("orders").cache_reason
    (record,) = project.quality(run_id=result.run_id)
    assert (record.rows, record.valid_rows, record.quarantined_rows) == (4, 1, 3)
    assert record.passed
    assert {c["rule"] for c in record.checks} == {"id.not_null", "id.unique", "amount.between"}


def test_the_gate_fails_the_node_and_stops_its_downstream(project: hr.Project) -> None:
    result = project.run(_pipeline({"id": [1, 1, 1], "amount": [1.0, 2.0, 3.0]}, gate=0.9))
    assert result.statuses() == {"orders": NodeStatus.FAILED, "total": NodeStatus.UPSTREAM_FAILED}
    assert "fails its quality gate: quality score" in (result.record("orders").error or "")
    assert not project.datasets.exists("orders")  # nothing below the gate is published
    assert project.read("orders__quarantine").height == 3  # but the bad rows can be inspected
    (record,) = project.quality(run_id=result.run_id)
    assert not record.passed


def test_clean_data_writes_no_quarantine(project: hr.Project) -> None:
    project.run(_pipeline({"id": [1, 2], "amount": [1.0, 2.0]})).raise_for_status()
    assert not project.datasets.exists("orders__quarantine")


def test_contracts_only_on_stored_nodes() -> None:
    with pytest.raises(PipelineError, match="has a contract but stores no output"):
        hr.Pipeline("p").transform(lambda: None, name="x", ephemeral=True, contract=ORDERS)


def test_a_reference_to_an_upstream_dataset_is_checked_in_the_pipeline(project: hr.Project) -> None:
    pipeline = hr.Pipeline("shop")
    pipeline.source(lambda: pl.DataFrame({"code": ["a", "b"]}), name="products")
    contract = hr.Contract(
        "orders", fields=[hr.Field("code", checks=[hr.checks.references("products")])]
    )

    def orders(products: pl.LazyFrame) -> pl.DataFrame:
        return pl.DataFrame({"code": ["a", "x", "b", "b"]})

    pipeline.transform(orders, contract=contract, gate=0.5)
    project.run(pipeline).raise_for_status()
    assert project.read("orders__quarantine")["code"].to_list() == ["x"]


def test_each_validated_node_gets_an_html_report_per_run(project: hr.Project) -> None:
    result = project.run(_pipeline({"id": [1, 2, 2], "amount": [5.0, 500.0, 1.0]}))
    report = project.reports_dir(result.run_id) / "orders.html"
    html = report.read_text(encoding="utf-8")
    assert "amount.between" in html
    assert "<svg" in html  # the value distribution chart


def test_reports_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_QUALITY_REPORTS", "false")
    with hr.Project.create(tmp_path / "quiet") as quiet:
        result = quiet.run(_pipeline({"id": [1], "amount": [5.0]}))
        assert not quiet.reports_dir(result.run_id).exists()
