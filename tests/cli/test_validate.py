import json
from pathlib import Path

import polars as pl
import pytest

from headrace.cli.app import main

CONTRACT = """
name: orders
fields:
  - name: id
    nullable: false
  - name: amount
    type: Float64
    coerce: true
    checks:
      - between: {min: 0, max: 100}
checks:
  - row_count: {min: 1}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "orders.csv"
    data.write_text("id,amount\n1,5\n2,x\n,7\n4,500\n5,6\n6,7\n7,8\n8,9\n9,10\n10,11\n")
    contract = tmp_path / "orders.yaml"
    contract.write_text(CONTRACT)
    return data, contract


def test_validate_a_file_prints_checks_and_writes_the_quarantine(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, contract = files
    out = tmp_path / "bad.parquet"
    code = main(
        [
            "validate",
            str(data),
            "--contract",
            str(contract),
            "--quarantine",
            str(out),
            "--gate",
            "0.5",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "amount.between" in printed
    assert "10 rows: 7 valid, 3 quarantined" in printed
    bad = pl.read_parquet(out).sort("_hr_row")
    assert bad["_hr_reasons"].to_list() == [["type_mismatch"], ["null"], ["out_of_range"]]
    assert bad["amount"].to_list() == ["x", "7", "500"]  # rows as they came in


def test_validate_json_and_a_failing_gate(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, contract = files
    code = main(
        ["validate", str(data), "--contract", str(contract), "--gate", "0.99", "--format", "json"]
    )
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads(captured.out)
    assert (report["rows"], report["quarantined_rows"], report["passed"]) == (10, 3, False)
    assert "fails its quality gate" in captured.err


def test_validate_a_stored_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "demo"
    assert main(["init", str(folder)]) == 0
    assert main(["run", "--project", str(folder)]) == 0
    contract = tmp_path / "c.yaml"
    contract.write_text(
        "name: spend\nfields:\n  - name: total\n    checks:\n      - between: {min: 0, max: 20}\n"
    )
    capsys.readouterr()
    assert (
        main(
            [
                "validate",
                "spend_per_user",
                "--contract",
                str(contract),
                "--project",
                str(folder),
                "--gate",
                "0.5",
            ]
        )
        == 0
    )
    assert "3 rows: 2 valid, 1 quarantined" in capsys.readouterr().out


def test_validate_writes_an_html_report_with_charts(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, contract = files
    report = tmp_path / "report.html"
    assert (
        main(
            [
                "validate",
                str(data),
                "--contract",
                str(contract),
                "--report",
                str(report),
                "--gate",
                "0.5",
            ]
        )
        == 0
    )
    page = report.read_text()
    assert page.startswith("<!doctype html>")
    assert "amount.between" in page
    assert page.count("<svg") >= 2  # a chart per column check
    assert "#d64545" in page  # failing values drawn in red
    assert "row 3: 500" in page  # a failing example
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN, no network


def test_usage_errors_exit_2_with_clicks_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "x", "--nope"]) == 2
    assert "No such option: --nope" in capsys.readouterr().err


def test_quarantine_lists_and_explains_held_back_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "headrace.toml").write_text('[project]\nname = "shop"\npipelines = ["pipeline.py"]\n')
    (folder / "pipeline.py").write_text(
        "import polars as pl\nimport headrace as hr\n"
        "pipeline = hr.Pipeline('shop')\n"
        "between = hr.checks.between(0, 10)\n"
        "contract = hr.Contract('orders', fields=[hr.Field('amount', checks=[between])])\n"
        "@pipeline.source(contract=contract, gate=0.1)\n"
        "def orders() -> pl.DataFrame:\n"
        "    return pl.DataFrame({'amount': [1, 50, 2, -3]})\n"
    )
    project = ["--project", str(folder)]
    assert main(["run", *project]) == 0
    capsys.readouterr()
    assert main(["quarantine", *project, "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["node"], listed["rows"]) == ("orders", 2)
    assert main(["quarantine", "orders", *project, "--format", "json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["rules"] == [{"rule": "amount.between", "rows": 2}]
    assert [r["amount"] for r in detail["preview"]] == [50, -3]
    assert main(["quarantine", "orders", *project]) == 0
    assert "amount.between" in capsys.readouterr().out


def test_validate_streams_the_valid_rows_to_a_file(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, contract = files
    valid = tmp_path / "valid.parquet"
    bad = tmp_path / "bad.parquet"
    args = ["validate", str(data), "--contract", str(contract), "--gate", "0"]
    assert (
        main([*args, "--valid-out", str(valid), "--quarantine", str(bad), "--format", "json"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    rows = pl.read_csv(data).height
    assert pl.read_parquet(valid).height == summary["valid_rows"]
    assert summary["valid_rows"] + pl.read_parquet(bad).height == rows == summary["rows"]
