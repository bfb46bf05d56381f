import json
from pathlib import Path

import pytest

from headrace.cli.app import main


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    capsys.readouterr()
    assert main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def scaffolded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "demo"
    assert main(["init", str(folder)]) == 0
    assert "created" in capsys.readouterr().out
    return folder


def test_init_then_run_then_inspect(scaffolded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = ["--project", str(scaffolded)]
    assert main(["run", *project]) == 0
    out = capsys.readouterr().out
    assert "spend_per_user" in out
    assert "succeeded" in out

    rerun = _json(capsys, "run", *project)
    assert isinstance(rerun, dict)
    statuses = {n["node"]: (n["status"], n["cache_hit"]) for n in rerun["nodes"]}
    assert statuses["spend_per_user"] == ("cached", True)

    runs = _json(capsys, "runs", *project)
    assert isinstance(runs, list)
    assert next(r["run_id"] for r in runs) == rerun["run_id"]
    shown = _json(capsys, "runs", "show", rerun["run_id"][:-2], *project)
    assert isinstance(shown, dict)
    assert shown["run_id"] == rerun["run_id"]

    datasets = _json(capsys, "datasets", *project)
    assert isinstance(datasets, list)
    assert sorted(d["dataset"] for d in datasets) == ["events", "spend_per_user"]
    detail = _json(capsys, "datasets", "show", "spend_per_user", "--version", "0", *project)
    assert isinstance(detail, dict)
    assert detail["total_rows"] == 3
    assert detail["preview"][0] == {"user": "ada", "total": 19.75, "message": "hello, ada"}
    history = _json(capsys, "datasets", "history", "spend_per_user", *project)
    assert isinstance(history, list)
    assert [h["version"] for h in history] == [0]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "spend_per_user [transform] <- events"),
        ("mermaid", "events --> spend_per_user"),
        ("dot", '"events" -> "spend_per_user";'),
        ("json", '"inputs": [\n        "events"\n      ]'),
    ],
)
def test_dag_formats(
    scaffolded: Path, capsys: pytest.CaptureFixture[str], fmt: str, expected: str
) -> None:
    capsys.readouterr()
    assert main(["dag", "--project", str(scaffolded), "--format", fmt]) == 0
    assert expected in capsys.readouterr().out


def test_errors_are_one_message_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--project", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err
    assert "headrace init" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "runs", "--project", str(tmp_path)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_failed_node_fails_the_command_naming_the_node(
    scaffolded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = scaffolded / "pipeline.py"
    pipeline.write_text(pipeline.read_text().replace('"amount": [12.5', '"amount": [1 / 0'))
    assert main(["run", "--project", str(scaffolded)]) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err


def test_node_failure_names_node(scaffolded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = scaffolded / "pipeline.py"
    text = pipeline.read_text().replace(
        '"""Total spend per user."""',
        '"""Total spend per user."""\n    raise ValueError("bad amounts")',
    )
    pipeline.write_text(text)
    assert main(["run", "--project", str(scaffolded)]) == 1
    err = capsys.readouterr().err
    assert "node spend_per_user: ValueError: bad amounts" in err
    assert "headrace runs show" in err


def test_bad_partition_and_config_syntax(
    scaffolded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--project", str(scaffolded), "--partition", "2013-01-01"]) == 1
    assert "no node of pipeline" in capsys.readouterr().err
    assert main(["run", "--project", str(scaffolded), "--config", "oops"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_config_override_reaches_the_node(
    scaffolded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--project", str(scaffolded), "--config", "greeting=hi"]) == 0
    detail = _json(capsys, "datasets", "show", "spend_per_user", "--project", str(scaffolded))
    assert isinstance(detail, dict)
    assert detail["preview"][0]["message"] == "hi, ada"


def test_init_refuses_to_overwrite(scaffolded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(scaffolded)]) == 1
    assert "already exist" in capsys.readouterr().err
