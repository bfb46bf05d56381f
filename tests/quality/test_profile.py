import json
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from headrace.cli.app import main
from headrace.core.contract_yaml import contract_from_yaml, contract_to_yaml
from headrace.quality.profile import profile, suggest_contract
from headrace.quality.validation import validate

ORDERS = pl.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "amount": [5.0, None, 7.0, 1.0],
        "status": ["new", "paid", "new", "new"],
        "code": ["AB", "CD", "EF", None],
    }
)


def test_profile_numbers_on_a_small_frame() -> None:
    rows = {r["column"]: r for r in profile(ORDERS).to_dicts()}
    assert rows["id"]["rows"] == 4
    assert (rows["id"]["min"], rows["id"]["max"], rows["id"]["p50"]) == ("1", "4", "3")
    assert rows["id"]["mean"] == pytest.approx(2.5)
    assert (rows["amount"]["null_count"], rows["amount"]["null_share"]) == (1, 0.25)
    assert rows["amount"]["distinct"] == 4  # null counts as a value
    assert rows["status"]["top_values"] == ["new", "paid"]
    assert (rows["status"]["min"], rows["status"]["mean"]) == (None, None)
    assert rows["code"]["top_values"] == ["AB", "CD", "EF"]  # ties in value order


def test_suggested_contract_describes_the_data() -> None:
    contract = suggest_contract(ORDERS, "orders")
    assert contract.name == "orders"
    assert [c.rule for c in contract.all_checks()] == [
        "id.not_null", "id.unique", "id.between", "amount.between",
        "status.not_null", "status.isin", "code.unique", "code.length", "row_count",
    ]  # fmt: skip
    assert contract.field("id").dtype == "Int64"
    assert contract.field("status").checks[0].params["values"] == ["new", "paid"]
    assert validate(ORDERS, contract).score == 1.0


def test_suggested_contract_round_trips_through_yaml() -> None:
    contract = suggest_contract(ORDERS, "orders")
    again = contract_from_yaml(contract_to_yaml(contract))
    assert again.all_checks() == contract.all_checks()
    assert [f.dtype for f in again.fields] == [f.dtype for f in contract.fields]
    assert validate(ORDERS, again).score == 1.0


def test_unnamed_types_are_left_open_and_empty_frames_pass() -> None:
    frame = pl.DataFrame({"tags": [["a"], None], "nothing": [None, None]})
    assert [f.dtype for f in suggest_contract(frame, "t").fields] == [None, None]
    empty = ORDERS.head(0)
    assert validate(empty, suggest_contract(empty, "e")).score == 1.0
    assert profile(empty)["rows"].to_list() == [0, 0, 0, 0]


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(0, 30))
    ints = st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)
    floats = st.lists(st.none() | st.floats(allow_nan=True), min_size=n, max_size=n)
    text = st.lists(st.none() | st.text("abcé", max_size=4), min_size=n, max_size=n)
    return pl.DataFrame(
        {"i": draw(ints), "f": draw(floats), "s": draw(text)},
        schema={"i": pl.Int64, "f": pl.Float64, "s": pl.String},
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_any_frame_passes_its_own_suggested_contract(frame: pl.DataFrame) -> None:
    contract = contract_from_yaml(contract_to_yaml(suggest_contract(frame, "random")))
    assert validate(frame, contract).score == 1.0


def test_profile_command_prints_json_and_writes_a_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "orders.csv"
    ORDERS.write_csv(data)
    out = tmp_path / "suggested.yaml"
    assert main(["profile", str(data), "--contract-out", str(out), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["column"] for r in rows] == ["id", "amount", "status", "code"]
    assert f"suggested contract written to {out}" in captured.err
    contract = contract_from_yaml(out.read_text())
    assert contract.name == "orders"
    assert main(["validate", str(data), "--contract", str(out), "--gate", "1"]) == 0
    assert main(["profile", str(data)]) == 0
    assert "top_values" in capsys.readouterr().out
