"""``headrace stream produce``: events from a file or stdin into a topic's embedded log."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import headrace as hr
from headrace.cli import stream
from headrace.cli.app import main
from headrace.connectors.log import OFFSET_COLUMN, PARTITION_COLUMN, partition_of
from headrace.project.streams import open_topic

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "headrace.toml").write_text(
        '[project]\nname = "shop"\npipelines = []\n[stream]\npartitions = 3\n', encoding="utf-8"
    )
    return root


def events(count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user": [f"u{i % 5}" for i in range(count)],
            "seq": list(range(count)),
            "ts": [T0 + timedelta(seconds=i) for i in range(count)],
            "amount": [i / 4 for i in range(count)],
        }
    )


def stored(folder: Path, topic: str) -> pl.DataFrame:
    with open_topic(hr.Project(folder), topic) as log:
        frames = [log.read(p, log.start_offset(p), 10**6).data for p in range(log.partitions)]
    return pl.concat(frames)


def run(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> tuple[str, str]:
    capsys.readouterr()
    assert main(list(args)) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def assert_arrived_once_by_key(folder: Path, topic: str, sent: pl.DataFrame) -> None:
    log = stored(folder, topic)
    assert log.height == sent.height
    assert all(
        row[PARTITION_COLUMN] == partition_of(row["user"], 3) for row in log.iter_rows(named=True)
    )
    assert_frame_equal(log.drop(PARTITION_COLUMN, OFFSET_COLUMN).sort("seq"), sent)


def test_produce_a_file_in_chunks(
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "CHUNK_ROWS", 7)
    sent = events(50)
    sent.write_parquet(tmp_path / "events.parquet")
    out, _ = run(
        capsys, "stream", "produce", "payments", str(tmp_path / "events.parquet"),
        "--key", "user", "--project", str(folder),
    )  # fmt: skip
    spread = ", ".join(str(p) for p in sorted({partition_of(f"u{i}", 3) for i in range(5)}))
    assert out.strip() == f"appended 50 events to topic payments (partitions {spread} of 3)"
    assert_arrived_once_by_key(folder, "payments", sent)


def test_produce_json_lines_from_stdin_as_json(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_topic(hr.Project(folder), "payments") as log:  # a typed first append
        log.append(events(1), key="user")
    sent = events(13).slice(1)
    lines = sent.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%SZ")).write_ndjson()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    out, _ = run(capsys, "stream", "produce", "payments", "-", "--key", "user",
                 "--project", str(folder), "--format", "json")  # fmt: skip
    body = json.loads(out)
    assert (body["topic"], body["events"]) == ("payments", 12)
    assert body["partitions"] == sorted({partition_of(f"u{i}", 3) for i in range(5)})
    assert set(body["first_offsets"]) == {str(p) for p in body["partitions"]}
    assert_arrived_once_by_key(folder, "payments", events(13))  # ISO text took the topic's type


def test_a_bad_topic_name_is_one_clear_message(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events(3).write_ndjson(tmp_path / "e.jsonl")
    _, err = run(capsys, "stream", "produce", "pay/ments", str(tmp_path / "e.jsonl"),
                 "--project", str(folder), code=1)  # fmt: skip
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("error: topic name 'pay/ments' is not allowed ('/' at position 3)")
    assert "Traceback" not in err


def test_malformed_stdin_appends_nothing(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b'{"user": "a", "n": 1}\n{"user": "b", "n": \n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    _, err = run(capsys, "stream", "produce", "clicks", "--project", str(folder), code=1)
    assert "record 1 (line 2) is not valid JSON" in err
    assert stored(folder, "clicks").height == 0
