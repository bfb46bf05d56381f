"""Drift of dataset versions: stored sketches and results, the drift= node option, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import headrace as hr
from headrace.cli.app import main


def _pipeline() -> hr.Pipeline:
    p = hr.Pipeline("drifty")

    @p.source(config=["shift"], drift=hr.Drift())
    def measurements(shift: float) -> pl.DataFrame:
        rng = np.random.default_rng(7)
        n = 50_000
        return pl.DataFrame(
            {
                "steady": rng.normal(0, 1, n),
                "moving": rng.normal(0, 1, n) + float(shift),
                "kind": rng.choice(["a", "b", "c"], n),
                "when": pl.datetime_range(
                    pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 2), "1s", eager=True
                ).head(n),
            }
        )

    return p


def test_the_drift_option_checks_each_new_version_and_alerts(tmp_path: Path) -> None:
    (tmp_path / "headrace.toml").write_text(
        '[project]\nname = "drifty"\npipelines = []\n'
        '[[alerts.rules]]\nname = "inputs drifted"\nkind = "drift"\nsinks = ["log"]\n'
    )
    with hr.Project(tmp_path) as project:
        project.run(_pipeline(), config={"shift": 0.0}).raise_for_status()
        sketch = project.state_dir / "sketches" / "measurements" / "0.sketch"
        assert sketch.exists()  # the first version's sketch, stored for later comparisons
        project.run(_pipeline(), config={"shift": 0.5}).raise_for_status()
        stored = project.state_dir / "drift" / "measurements" / "1-vs-0.json"
        result = json.loads(stored.read_text())
        drifted = {c["column"] for c in result["columns"] if c["drifted"]}
        assert drifted == {"moving"}  # the timestamp column is not compared
        alerts = [a for a in project.alerts() if a.kind == "drift"]
        assert alerts
        assert "moving" in json.dumps(alerts[0].evidence)


def test_cli_drift_with_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with hr.Project.create(tmp_path) as project:
        for shift in (0.0, 0.001, 1.0):  # a negligible shift, then a real one
            project.run(_pipeline(), config={"shift": shift}).raise_for_status()
    page = tmp_path / "drift.html"
    capsys.readouterr()
    assert main(["drift", "measurements", "--reference", "0", "--report", str(page),
                 "--project", str(tmp_path)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "1 of 3 column(s) drifted" in printed  # v2 (shift 1.0) vs v0
    assert "<svg" in page.read_text()
    assert main(["drift", "measurements", "-r", "0", "-c", "1", "-f", "json",
                 "--project", str(tmp_path)]) == 0  # fmt: skip
    negligible = json.loads(capsys.readouterr().out)
    assert not any(c["drifted"] for c in negligible["columns"])


def test_cli_lists_alerts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "headrace.toml").write_text(
        '[project]\nname = "drifty"\npipelines = []\n'
        '[[alerts.rules]]\nname = "inputs drifted"\nkind = "drift"\nsinks = ["log"]\n'
    )
    with hr.Project(tmp_path) as project:
        for shift in (0.0, 2.0):
            project.run(_pipeline(), config={"shift": shift}).raise_for_status()
    capsys.readouterr()
    assert main(["alerts", "--project", str(tmp_path)]) == 0
    assert "inputs drifted" in capsys.readouterr().out
    assert main(["alerts", "--kind", "drift", "-f", "json", "--project", str(tmp_path)]) == 0
    (alert,) = json.loads(capsys.readouterr().out)
    assert alert["evidence"]["dataset"] == "measurements"
