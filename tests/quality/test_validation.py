from datetime import UTC, datetime, timedelta
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import given, settings

import headrace as hr
from headrace.core.contract_yaml import contract_from_yaml, contract_to_yaml
from headrace.errors import ContractError, QualityGateError
from headrace.quality.validation import validate_stream


def _one(field: hr.Field, values: list[object], dtype: pl.DataType) -> hr.ValidationResult:
    frame = pl.DataFrame({field.name: pl.Series(values, dtype=dtype)})
    return hr.validate(frame, hr.Contract("t", fields=[field]))


@pytest.mark.parametrize(
    ("check", "values", "dtype", "bad_rows"),
    [
        (hr.checks.not_null(), [1, None, 3], pl.Int64(), [1]),
        (hr.checks.between(0, 10), [-1, 0, 10, 11, None], pl.Int64(), [0, 3]),
        (hr.checks.between(0, 10, inclusive="none"), [0, 5, 10], pl.Int64(), [0, 2]),
        (hr.checks.between(min=0.5), [0.4, 0.5, None], pl.Float64(), [0]),
        (hr.checks.isin(["a", "b"]), ["a", "c", None], pl.String(), [1]),
        (hr.checks.matches(r"^[A-Z]{2}$"), ["US", "usa", "D"], pl.String(), [1, 2]),
        (hr.checks.length(2, 3), ["a", "ab", "abcd"], pl.String(), [0, 2]),
        (hr.checks.unique(), [1, 2, 2, None, None], pl.Int64(), [1, 2]),
        (hr.checks.between(0, 10, nulls="fail"), [1, None], pl.Int64(), [1]),
    ],
)
def test_row_checks(
    check: hr.Check, values: list[object], dtype: pl.DataType, bad_rows: list[int]
) -> None:
    result = _one(hr.Field("v", checks=[check]), values, dtype)
    assert result.quarantined["_hr_row"].to_list() == bad_rows
    assert result.valid.height + result.quarantined.height == len(values)


def test_compound_unique_and_custom_expressions() -> None:
    frame = pl.DataFrame(
        {"a": [1, 1, 1], "b": [1, 2, 1], "qty": [1, 5, 2], "amount": [1.0, 0.0, 3.0]}
    )
    contract = hr.Contract(
        "t",
        checks=[
            hr.checks.unique("a", "b"),
            hr.checks.expression("covers", "amount >= qty * 0.5"),
            hr.checks.expression("positive", pl.col("amount") > 0, severity="warn"),
        ],
    )
    result = hr.validate(frame, contract)
    rules = dict(
        zip(result.quarantined["_hr_row"], result.quarantined["_hr_rules"].to_list(), strict=True)
    )
    assert rules == {0: ["a+b.unique"], 1: ["covers"], 2: ["a+b.unique"]}
    warned = result.failures.filter(pl.col("severity") == "warn")
    assert warned["row"].to_list() == [1]


def test_reason_codes_and_failure_cases() -> None:
    field = hr.Field("v", nullable=False, checks=[hr.checks.between(0, 1)])
    result = _one(field, [None, 5], pl.Int64())
    assert result.quarantined["_hr_reasons"].to_list() == [["null"], ["out_of_range"]]
    assert result.failures.select("row", "rule", "reason", "value").rows() == [
        (0, "v.not_null", "null", None),
        (1, "v.between", "out_of_range", "5"),
    ]


def test_type_coercion_quarantines_what_does_not_convert() -> None:
    field = hr.Field("n", "Int64", coerce=True)
    result = _one(field, ["1", "x", None], pl.String())
    assert result.valid.schema["n"] == pl.Int64
    assert result.valid["n"].to_list() == [1, None]
    assert result.quarantined["_hr_reasons"].to_list() == [["type_mismatch"]]
    assert result.quarantined["n"].to_list() == ["x"]  # as it came in
    assert result.failures["value"].to_list() == ["x"]


def test_wrong_type_without_coercion_is_a_contract_error() -> None:
    with pytest.raises(
        ContractError, match=r"column 'n' is String, but contract 't' says Int64.*coerce=True"
    ):
        _one(hr.Field("n", "Int64"), ["1"], pl.String())


def test_dataset_checks() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    frame = pl.DataFrame(
        {"x": [1.0, 2.0, None, 4.0], "t": [now - timedelta(hours=h) for h in (1, 2, 3, 30)]}
    )
    contract = hr.Contract(
        "t",
        checks=[
            hr.checks.row_count(min=5),
            hr.checks.freshness("t", timedelta(hours=2)),
            hr.checks.distribution("x", "mean", 2, 3),
            hr.checks.distribution("x", "null_share", max=0.1, severity="warn"),
            hr.checks.distribution("x", "quantile", quantile=0.9, max=3.5),
            hr.checks.aggregate("total", pl.col("x").sum(), min=7),
        ],
    )
    result = hr.validate(frame, contract, now=now)
    passed = dict(zip(result.checks["rule"], result.checks["passed"], strict=True))
    assert passed == {
        "row_count": False,
        "t.freshness": True,
        "x.mean": True,
        "x.null_share": False,
        "x.quantile_0.9": False,
        "total": True,
    }
    assert result.quarantined.height == 0  # dataset checks route no rows


def test_mostly_lets_a_check_pass_while_rows_are_still_quarantined() -> None:
    field = hr.Field("v", checks=[hr.checks.between(0, 10, mostly=0.5)])
    result = _one(field, [1, 2, 30], pl.Int64())
    assert result.checks["passed"].to_list() == [True]
    assert result.quarantined.height == 1


def test_score_is_the_severity_weighted_mean() -> None:
    # error row check: pass rate 0.75 (weight 1); warn row check: 0.5 (weight 0.5);
    # error dataset check: passed (weight 1) -> (0.75 + 0.25 + 1) / 2.5 = 0.8
    frame = pl.DataFrame({"a": [1, 2, 3, 40], "b": ["x", "x", "y", "y"]})
    contract = hr.Contract(
        "t",
        fields=[
            hr.Field("a", checks=[hr.checks.between(0, 10)]),
            hr.Field("b", checks=[hr.checks.isin(["x"], severity="warn")]),
        ],
        checks=[hr.checks.row_count(min=1)],
    )
    result = hr.validate(frame, contract)
    assert result.score == pytest.approx(0.8)
    assert not result.passes_gate()
    assert result.passes_gate(0.8)
    with pytest.raises(QualityGateError, match=r"quality score 0.800 is below the gate 0.9"):
        result.gate()


def test_a_failed_error_dataset_check_fails_the_gate_even_with_a_high_score() -> None:
    frame = pl.DataFrame({"a": range(100)})
    contract = hr.Contract(
        "t",
        fields=[hr.Field("a", checks=[hr.checks.between(0, 1000)] * 1)],
        checks=[hr.checks.row_count(max=10), hr.checks.row_count(min=1, name="not_empty")],
    )
    result = hr.validate(frame, contract)
    assert result.score == pytest.approx(2 / 3)
    with pytest.raises(QualityGateError, match="error checks failed: row_count"):
        result.gate(0.5)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: hr.Field("v", "Integer"), "unknown type 'Integer'"),
        (
            lambda: hr.Contract("t", fields=[hr.Field("v", checks=[hr.checks.matches("([")])]),
            "invalid regular expression",
        ),
        (lambda: hr.Contract("t", checks=[hr.checks.between(0, 1)]), "needs a column"),
        (lambda: hr.Contract("t", fields=[hr.Field("v"), hr.Field("v")]), "declares field"),
        (lambda: hr.checks.distribution("v", "mode"), "stat must be one of"),
    ],
)
def test_bad_contracts_are_named(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractError, match=message):
        build()


def test_contract_against_data_it_does_not_fit() -> None:
    frame = pl.DataFrame({"v": [1]})
    with pytest.raises(ContractError, match=r"no column 'w', which contract 't' declares"):
        hr.validate(frame, hr.Contract("t", fields=[hr.Field("w")]))
    with pytest.raises(ContractError, match=r"bound 'a' \(str\) does not fit column 'v'"):
        hr.validate(
            frame, hr.Contract("t", fields=[hr.Field("v", checks=[hr.checks.between("a", "b")])])
        )
    with pytest.raises(ContractError, match=r"check 'ghost' .* reads column"):
        hr.validate(frame, hr.Contract("t", checks=[hr.checks.unique("ghost", name="ghost")]))


# -- the invariant: nothing is lost -------------------------------------------------------

_checks = st.sampled_from(
    [
        lambda: hr.Field("i", nullable=False),
        lambda: hr.Field("i", unique=True),
        lambda: hr.Field("i", checks=[hr.checks.between(-3, 3)]),
        lambda: hr.Field("f", checks=[hr.checks.between(0.0, 1.0, nulls="fail")]),
        lambda: hr.Field("s", checks=[hr.checks.isin(["a", "b"], severity="warn")]),
        lambda: hr.Field("s", checks=[hr.checks.matches("^a"), hr.checks.length(1, 2)]),
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-5, 5)),
            st.one_of(st.none(), st.floats(-1, 2, allow_nan=False)),
            st.one_of(st.none(), st.sampled_from(["a", "b", "ab", "abc", "c", ""])),
        ),
        max_size=40,
    ),
    builders=st.lists(_checks, min_size=0, max_size=4, unique_by=id),
)
def test_valid_plus_quarantined_is_the_input(
    rows: list[tuple[object, ...]], builders: list
) -> None:  # type: ignore[type-arg]
    frame = pl.DataFrame(
        rows, schema={"i": pl.Int64, "f": pl.Float64, "s": pl.String}, orient="row"
    )
    fields: dict[str, hr.Field] = {}
    for build in builders:
        field = build()
        if field.name not in fields:
            fields[field.name] = field
    result = hr.validate(frame, hr.Contract("random", fields=list(fields.values())))

    assert result.valid.height + result.quarantined.height == frame.height
    rebuilt = pl.concat([result.valid, result.quarantined.select(frame.columns)])
    assert sorted(rebuilt.rows(), key=repr) == sorted(frame.rows(), key=repr)
    assert all(rules for rules in result.quarantined["_hr_rules"].to_list())
    error_rules = result.failures.filter(pl.col("severity") == "error")
    assert set(error_rules["row"]) == set(result.quarantined["_hr_row"])
    assert 0.0 <= result.score <= 1.0


def test_references_accept_only_keys_of_another_dataset() -> None:
    airlines = pl.DataFrame({"carrier": ["AA", "UA"]})
    flights = pl.DataFrame({"carrier": ["AA", "ZZ", None, "UA"], "n": [1, 2, 3, 4]})
    contract = hr.Contract(
        "f", fields=[hr.Field("carrier", checks=[hr.checks.references("airlines")])]
    )
    result = hr.validate(flights, contract, lookups={"airlines": airlines})
    assert result.quarantined["_hr_row"].to_list() == [1]
    assert result.quarantined["_hr_reasons"].to_list() == [["missing_reference"]]
    with pytest.raises(ContractError, match=r"references dataset 'airlines', which was not given"):
        hr.validate(flights, contract)
    other_column = hr.Contract(
        "f", fields=[hr.Field("n", checks=[hr.checks.references("airlines", "code")])]
    )
    with pytest.raises(ContractError, match="dataset 'airlines' has no column 'code'"):
        hr.validate(flights, other_column, lookups={"airlines": airlines})


def test_a_primary_key_is_non_null_and_unique_as_a_whole() -> None:
    contract = hr.Contract(
        "legs",
        fields=[hr.Field("flight", "Int64"), hr.Field("leg", "Int64"), hr.Field("km", "Float64")],
        primary_key=["flight", "leg"],
    )
    frame = pl.DataFrame(
        {"flight": [1, 1, 1, 2, None], "leg": [1, 2, 2, 1, 1], "km": [1.0, 2.0, 3.0, 4.0, 5.0]}
    )
    result = hr.validate(frame, contract)
    assert result.valid["km"].to_list() == [1.0, 4.0]
    quarantined = result.quarantined
    rules = dict(zip(quarantined["km"].to_list(), quarantined["_hr_rules"].to_list(), strict=True))
    assert rules == {2.0: ["primary_key"], 3.0: ["primary_key"], 5.0: ["flight.not_null"]}
    with pytest.raises(hr.errors.ContractError, match=r"primary key column\(s\) \['nope'\]"):
        hr.Contract("x", fields=[hr.Field("a")], primary_key=["nope"])
    assert "primary_key:" in contract_to_yaml(contract)
    assert contract_from_yaml(contract_to_yaml(contract)).primary_key == ("flight", "leg")


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-5, 5)),
            st.one_of(st.none(), st.floats(-1, 2, allow_nan=False)),
            st.one_of(st.none(), st.sampled_from(["a", "b", "ab", "abc", "c", "", "7"])),
        ),
        max_size=40,
    ),
    builders=st.lists(_checks, min_size=0, max_size=4, unique_by=id),
)
def test_the_streaming_engine_finds_exactly_what_the_in_memory_one_finds(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[object, ...]],
    builders: list,  # type: ignore[type-arg]
) -> None:
    frame = pl.DataFrame(
        rows, schema={"i": pl.Int64, "f": pl.Float64, "s": pl.String}, orient="row"
    )
    fields: dict[str, hr.Field] = {"s": hr.Field("s", "Int64", coerce=True)}
    for build in builders:
        field = build()
        fields.setdefault(field.name, field)
    contract = hr.Contract("random", fields=list(fields.values()), checks=[hr.checks.row_count(1)])
    folder = tmp_path_factory.mktemp("stream")
    frame.write_parquet(folder / "in.parquet")
    in_memory = hr.validate(frame, contract)
    streamed = validate_stream(
        pl.scan_parquet(folder / "in.parquet"), contract, valid_out=folder / "valid.parquet"
    )
    assert streamed.checks.equals(in_memory.checks)
    assert streamed.quarantined.equals(in_memory.quarantined)
    assert streamed.failures.equals(in_memory.failures)
    assert streamed.valid_rows == in_memory.valid.height
    assert pl.read_parquet(folder / "valid.parquet").equals(in_memory.valid)
    assert streamed.score == in_memory.score


def test_both_engines_parse_timestamps_in_a_second_layout(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"at": ["2013-01-01T05:00:00Z"] * 250 + ["2013-01-02 06:30:00+00:00", "soon", None]}
    )
    contract = hr.Contract("t", fields=[hr.Field("at", "Datetime[UTC]", coerce=True)])
    frame.write_parquet(tmp_path / "t.parquet")
    in_memory = hr.validate(frame, contract)
    streamed = validate_stream(pl.scan_parquet(tmp_path / "t.parquet"), contract)
    assert in_memory.quarantined["at"].to_list() == ["soon"]
    assert streamed.quarantined.equals(in_memory.quarantined)
    assert streamed.valid.equals(in_memory.valid)
