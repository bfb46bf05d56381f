from datetime import timedelta

import polars as pl
import pytest

import headrace as hr
from headrace.core.contract_yaml import contract_from_yaml, contract_to_yaml
from headrace.errors import ContractError

YAML = """
name: orders
owner: data-eng
fields:
  - name: id
    type: Int64
    nullable: false
    unique: true
  - name: amount
    type: Float64
    checks:
      - between: {min: 0, max: 100}
      - between: {max: 50}
        severity: warn
        mostly: 0.9
        name: amount.usually_small
  - name: status
    pii: none
    checks:
      - isin: [new, paid]
      - matches: "^[a-z]+$"
      - references: {dataset: statuses, column: code}
checks:
  - row_count: {min: 1}
  - unique: {columns: [id, status]}
  - expression: {name: paid_has_amount, expr: "status <> 'paid' OR amount > 0"}
  - freshness: {column: t, max_age: 2h}
  - distribution: {column: amount, stat: quantile, quantile: 0.5, max: 80}
"""


def test_yaml_builds_the_same_contract_as_python() -> None:
    contract = contract_from_yaml(YAML)
    assert contract.owner == "data-eng"
    assert [c.rule for c in contract.all_checks()] == [
        "id.not_null", "id.unique", "amount.between", "amount.usually_small", "status.isin",
        "status.matches", "status.references", "row_count", "id+status.unique",
        "paid_has_amount", "t.freshness", "amount.quantile_0.5",
    ]  # fmt: skip
    assert contract.all_checks()[3].mostly == 0.9
    assert contract.all_checks()[10].params["max_age"] == timedelta(hours=2)


def test_yaml_round_trips() -> None:
    text = contract_to_yaml(contract_from_yaml(YAML))
    again = contract_from_yaml(text)
    assert [c.rule for c in again.all_checks()] == [
        c.rule for c in contract_from_yaml(YAML).all_checks()
    ]
    assert contract_to_yaml(again) == text


def test_yaml_contract_validates_data() -> None:
    frame = pl.DataFrame({"id": [1, 2], "amount": [10.0, 0.0], "status": ["paid", "paid"]})
    contract = contract_from_yaml(YAML.split("  - freshness", maxsplit=1)[0])
    statuses = pl.DataFrame({"code": ["paid", "new"]})
    result = hr.validate(frame, contract, lookups={"statuses": statuses})
    assert result.quarantined["_hr_rules"].to_list() == [["paid_has_amount"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nfields:\n  - type: Int64\n", "each field needs a name"),
        ("name: x\nfields:\n  - name: a\n    colour: red\n", "unknown key"),
        ("name: x\nchecks:\n  - between: {min: 0}\n    isin: [1]\n", "exactly one kind"),
        ("name: x\nchecks:\n  - frobnicate: {}\n", "unknown check 'frobnicate'"),
        ("name: x\nchecks:\n  - freshness: {column: t, max_age: soon}\n", "duration 'soon'"),
        ("name: x\nfields:\n  - name: a\n    checks:\n      - between: {lo: 1}\n", "bad arguments"),
        ("fields: []\n", "at least a name"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_is_named(text: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        contract_from_yaml(text, source="c.yaml")
