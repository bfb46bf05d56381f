import polars as pl
import pytest

import headrace as hr
from headrace.core.records import NodeStatus


def _pipeline(contract: hr.Contract) -> hr.Pipeline:
    pipeline = hr.Pipeline("shop")
    frame = pl.DataFrame({"id": [1, 2], "amount": [1.0, 2.0]})
    pipeline.source(lambda: frame, name="orders", contract=contract)
    return pipeline


V1 = hr.Contract("orders", fields=[hr.Field("id", "Int64"), hr.Field("amount", "Float64")])
COMPATIBLE = hr.Contract(
    "orders", fields=[hr.Field("id", "Int64"), hr.Field("amount", "Float64", nullable=True)]
)
BREAKING = hr.Contract(
    "orders", fields=[hr.Field("id", "Int64", nullable=False), hr.Field("amount", "Float64")]
)


def test_compatible_contract_changes_run(project: hr.Project) -> None:
    project.run(_pipeline(V1)).raise_for_status()
    project.run(_pipeline(COMPATIBLE)).raise_for_status()


def test_a_breaking_change_fails_until_approved_and_the_approval_is_recorded(
    project: hr.Project,
) -> None:
    project.run(_pipeline(V1)).raise_for_status()
    refused = project.run(_pipeline(BREAKING))
    record = refused.record("orders")
    assert record.status is NodeStatus.FAILED
    assert "id: now required" in (record.error or "")
    assert "--approve-breaking orders" in (record.error or "")

    approved = project.run(_pipeline(BREAKING), approve_breaking=["orders"])
    assert approved.ok
    assert project.get_run(approved.run_id).params["approve_breaking"] == ["orders"]
    quality = project.quality(run_id=approved.run_id)[0]
    assert quality.approved_changes == ["id: now required (nulls no longer allowed) — breaking"]
    # the approved contract is now the one in use: the next run needs no approval
    project.run(_pipeline(BREAKING)).raise_for_status()


@pytest.mark.parametrize("approval", ["*", "orders"])
def test_approval_by_name_or_for_all(project: hr.Project, approval: str) -> None:
    project.run(_pipeline(V1)).raise_for_status()
    assert project.run(_pipeline(BREAKING), approve_breaking=[approval]).ok
