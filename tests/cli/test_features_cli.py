"""``headrace features ...`` on a project folder."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from headrace.cli.app import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_training_set_materialize_get_bind_list(
    feature_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = ["--project", str(feature_project)]
    _run(capsys, "run", *project)
    entities = tmp_path / "entities.csv"
    entities.write_text(
        "user,event_timestamp\nada,2024-03-01T01:00:00Z\nbob,2024-03-01T01:00:00Z\n,2024-03-01\n"
    )
    out = tmp_path / "training.parquet"
    printed = _run(
        capsys, "features", "training-set", str(entities), "--feature-set", "fraud",
        "--out", str(out), *project,
    )  # fmt: skip
    assert "wrote 3 rows x 4 features of fraud v1" in printed
    frame = pl.read_parquet(out)
    assert frame["spend__spend_1d"].to_list() == [10.0, 5.0, None]

    printed = _run(
        capsys, "features", "materialize", "--as-of", "2024-03-02T06:00:00", "--format",
        "json", *project,
    )  # fmt: skip
    assert json.loads(printed)[0]["rows"] == 3
    printed = _run(
        capsys, "features", "get", "user=ada", "--feature-set", "fraud", "--as-of",
        "2024-03-02T06:00:00", "--format", "json", *project,
    )  # fmt: skip
    found = json.loads(printed)
    assert found["features"]["spend__spend_1d"] == 2.0
    assert found["statuses"]["spend__country"] == "present"

    assert "fraud v1" in _run(
        capsys, "features", "bind", "m", "7", "--feature-set", "fraud", *project
    )
    listing = json.loads(_run(capsys, "features", "list", "--format", "json", *project))
    assert listing["views"] == [{"name": "spend", "version": 1}]
    assert listing["models"][0]["model_version"] == "7"


def test_errors_are_one_message(feature_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = ["--project", str(feature_project)]
    assert main(["run", *project]) == 0
    capsys.readouterr()
    assert main(["features", "get", "user=ada", "--feature-set", "nope", *project]) == 1
    assert "no feature set 'nope'" in capsys.readouterr().err
    assert main(["features", "get", "user=ada", *project]) == 1
    assert "give --feature-set NAME" in capsys.readouterr().err
