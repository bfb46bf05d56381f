"""``headrace stream reset``: a job forgets its checkpoints and reads its topic again."""

from __future__ import annotations

import io
import json
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.cli.app import main
from headrace.connectors.log import partition_of
from headrace.storage.checkpoints import CheckpointStore

T0 = datetime(2024, 3, 1, tzinfo=UTC)
JOB = "clicks/clicks"
USERS = [f"u{i}" for i in range(6)]
PIPELINE = textwrap.dedent(
    """
    import polars as pl
    import headrace as hr

    pipeline = hr.Pipeline("clicks")

    @pipeline.source
    def clicks_raw() -> pl.DataFrame:
        return pl.DataFrame(schema={"user": pl.String, "ts": pl.Datetime("us", "UTC")})

    pipeline.stream("clicks_raw", event_time="ts", disorder="1s", key="user", topic="clicks")
    pipeline.features(hr.FeatureView(
        "user_clicks", entity=hr.Entity("user", ["user"]), source="clicks_raw",
        event_time="ts", ttl="1d", features=[hr.Aggregate(None, "count", "1h", name="n")],
    ))
    """
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project whose stream has 3 partitions and 30 events in them (5 per user)."""
    root = tmp_path / "shop"
    root.mkdir()
    (root / "headrace.toml").write_text(
        '[project]\nname = "shop"\npipelines = ["pipeline.py"]\n'
        "[stream]\npartitions = 3\ncheckpoint_interval = 0.05\n",
        encoding="utf-8",
    )
    (root / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    events = pl.DataFrame(
        {
            "user": [USERS[i % 6] for i in range(30)],
            "ts": [T0 + timedelta(seconds=i) for i in range(30)],
        }
    )
    with hr.Project(root) as project:
        project.produce("clicks", events, key="user")
    return root


def run_job(capsys: pytest.CaptureFixture[str], folder: Path) -> int:
    """Run the job to the end of the topic; the events it read."""
    capsys.readouterr()
    args = ["stream", "run", "--until-end", "--format", "json", "--project", str(folder)]
    assert main(args) == 0
    return int(json.loads(capsys.readouterr().out)["events"])


def reset(
    capsys: pytest.CaptureFixture[str], folder: Path, *args: str, code: int = 0
) -> tuple[str, str]:
    capsys.readouterr()
    assert main(["stream", "reset", *args, "--project", str(folder)]) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def stored_events(folder: Path) -> int:
    with hr.Project(folder) as project:
        return project.datasets.scan("clicks__events").collect().height


def test_reset_reads_every_partition_again(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_job(capsys, folder) == 30
    assert run_job(capsys, folder) == 0  # resumed from its checkpoint

    out, _ = reset(capsys, folder, "--yes")
    out = " ".join(out.split())  # the console wraps long lines
    assert f"forgot the checkpoints of stream job {JOB}: partitions 0, 1, 2" in out
    assert "from the first event the broker still holds" in out
    assert (
        "appended again to clicks__events, user_clicks__stream, clicks__late and "
        "clicks__quarantine: their rows from before the reset stay"
    ) in out
    assert "will be there twice" in out

    assert run_job(capsys, folder) == 30
    assert stored_events(folder) == 60
    out, _ = reset(capsys, folder, "clicks", "--source", "clicks_raw", "--yes", "-f", "json")
    assert json.loads(out)["partitions"] == [0, 1, 2]


def test_reset_of_one_partition_reads_only_that_one_again(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_job(capsys, folder) == 30
    partition = partition_of("u0", 3)
    in_it = sum(5 for user in USERS if partition_of(user, 3) == partition)

    out, _ = reset(capsys, folder, "--partition", str(partition), "--yes")
    assert f"stream job {JOB}: partition {partition}\n" in out

    assert run_job(capsys, folder) == in_it
    assert stored_events(folder) == 30 + in_it


def test_reset_asks_first_and_refuses_while_workers_hold_partitions(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_job(capsys, folder) == 30
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    _, err = reset(capsys, folder, code=130)
    assert f"Forget the checkpoints of stream job {JOB} (every partition)?" in err
    assert run_job(capsys, folder) == 0  # nothing was forgotten

    with hr.Project(folder) as project:
        store = CheckpointStore(project.metadata)
        live = store.heartbeat(JOB, "worker-1", expiry=timedelta(minutes=1))
        assert store.claim(JOB, "worker-1", [1], live) == [1]
        _, err = reset(capsys, folder, "--yes", code=1)
        assert f"stream job '{JOB}' is running" in err
        assert store.load(JOB, [0, 1, 2]).keys() == {0, 1, 2}

        store.leave(JOB, "worker-1")  # stopped: its claim no longer counts
    out, _ = reset(capsys, folder, "--yes")
    assert "partitions 0, 1, 2" in out
