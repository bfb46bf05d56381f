"""``POST /streams/{topic}/events`` on a real Uvicorn server, next to the feature endpoints."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import uvicorn
from polars.testing import assert_frame_equal

import headrace as hr
from headrace.connectors.log import OFFSET_COLUMN, PARTITION_COLUMN, partition_of
from headrace.project.streams import open_topic
from headrace.serving.app import create_app

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ARROW = "application/vnd.apache.arrow.stream"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def project(feature_project: Path) -> Iterator[hr.Project]:
    with hr.Project(feature_project) as proj:
        yield proj


@pytest.fixture
def server(project: hr.Project) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="error")
    app_server = uvicorn.Server(config)
    thread = threading.Thread(target=app_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not app_server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    app_server.should_exit = True
    thread.join(10)


def push(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored(project: hr.Project, topic: str) -> pl.DataFrame:
    with open_topic(project, topic) as log:
        frames = [log.read(p, log.start_offset(p), 10**6).data for p in range(log.partitions)]
    return pl.concat(frames)


def arrow_body(frame: pl.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    table = frame.to_arrow()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=3)  # several record batches
    return bytes(sink.getvalue().to_pybytes())


def assert_each_once_in_its_partition(project: hr.Project, topic: str, sent: pl.DataFrame) -> None:
    log = stored(project, topic)
    assert all(
        row[PARTITION_COLUMN] == partition_of(row["user"], 4) for row in log.iter_rows(named=True)
    )
    assert_frame_equal(log.drop(PARTITION_COLUMN, OFFSET_COLUMN).sort("seq"), sent.sort("seq"))


def test_json_events_arrive_once_in_their_keys_partition(server: str, project: hr.Project) -> None:
    records = [
        {"user": f"u{i % 3}", "seq": i, "amount": i + 0.5, "ok": i % 2 == 0, "tags": ["a"] * i}
        for i in range(6)
    ]
    status, body = push(
        f"{server}/streams/payments/events?key=user",
        json.dumps(records).encode(),
        "application/json",
    )
    assert status == 200
    log = stored(project, "payments")
    partitions = sorted(set(log[PARTITION_COLUMN].to_list()))
    assert body == {
        "topic": "payments",
        "events": 6,
        "partitions": partitions,
        "first_offsets": {str(p): 0 for p in partitions},
    }
    assert_each_once_in_its_partition(project, "payments", pl.DataFrame(records))
    status, body = push(
        f"{server}/streams/payments/events?key=user",
        b'{"user": "u0", "seq": 6, "amount": 1, "ok": true, "tags": []}',
        "application/json; charset=utf-8",
    )
    assert (status, body["events"]) == (200, 1)
    home = partition_of("u0", 4)
    earlier = log.filter(pl.col(PARTITION_COLUMN) == home).height
    assert body["first_offsets"] == {str(home): earlier}  # right after the partition's events
    with urllib.request.urlopen(f"{server}/features/sets", timeout=10) as response:
        assert (response.status, json.loads(response.read())) == (200, [])  # one app for both


def test_arrow_then_ndjson_keep_the_topics_types(server: str, project: hr.Project) -> None:
    typed = pl.DataFrame(
        {
            "user": ["ada", "bob", "cy", "ada", "bob", "dan", "eve"],
            "seq": pl.Series(range(7), dtype=pl.Int32),
            "ts": [T0 + timedelta(hours=i) for i in range(7)],
            "amount": pl.Series([1.5, 2.5, None, 4.0, 5.0, 6.0, 7.0], dtype=pl.Float32),
        }
    )
    status, body = push(f"{server}/streams/clicks/events?key=user", arrow_body(typed), ARROW)
    assert (status, body["events"]) == (200, 7)
    lines = b'{"user": "ada", "seq": 7, "ts": "2024-03-02T00:00:00Z", "amount": 8}\n\n'
    lines += b'{"user": "zed", "seq": 8, "ts": "2024-03-02T01:00:00+01:00"}\n'
    status, body = push(f"{server}/streams/clicks/events?key=user", lines, "application/x-ndjson")
    assert (status, body["events"]) == (200, 2)
    more = pl.DataFrame(
        {
            "user": ["ada", "zed"],
            "seq": [7, 8],
            "ts": [T0 + timedelta(days=1)] * 2,
            "amount": [8.0, None],
        },
        schema=typed.schema,
    )
    assert_each_once_in_its_partition(project, "clicks", pl.concat([typed, more]))


@pytest.mark.parametrize(
    ("body", "content_type", "code", "expected"),
    [
        (b'[{"user": "a", "seq": 1', "application/json", 400, {"reason": "not_json"}),
        (
            b'[{"user": "a", "seq": 9}, 3]',
            "application/json",
            422,
            {"reason": "not_object", "record": 1},
        ),
        (b"not arrow at all", ARROW, 400, {"reason": "not_arrow"}),
        (b'{"user": "a", "seq": 9}\n{"user": ', "application/x-ndjson", 400, {"record": 1}),
        (
            b'[{"user": "a", "seq": 9}, {"user": "b", "seq": "ten"}]',
            "application/json",
            422,
            {"reason": "type_conflict", "record": 1, "field": "seq"},
        ),
        (
            b'[{"user": "a", "seq": 9}, {"user": "b", "colour": "red"}]',
            "application/json",
            422,
            {"reason": "unknown_field", "record": 1, "field": "colour"},
        ),
        (b'[{"seq": 9}]', "application/json", 422, {"reason": "key_field", "field": "user"}),
        (b"user,seq\na,1\n", "text/csv", 415, {"reason": "media_type"}),
    ],
)
def test_a_malformed_body_is_refused_and_appends_nothing(
    server: str,
    project: hr.Project,
    body: bytes,
    content_type: str,
    code: int,
    expected: dict[str, Any],
) -> None:
    seed = json.dumps([{"user": "a", "seq": 0}, {"user": "b", "seq": 1}]).encode()
    assert push(f"{server}/streams/t/events?key=user", seed, "application/json")[0] == 200
    status, answer = push(f"{server}/streams/t/events?key=user", body, content_type)
    assert status == code, answer
    error = answer["error"]
    assert error["type"] == "EventsError"
    assert expected.items() <= error.items()
    if "field" in expected:
        assert repr(expected["field"]) in error["message"]
    assert stored(project, "t")["seq"].sort().to_list() == [0, 1]


def test_an_arrow_body_of_another_type_names_the_field(server: str, project: hr.Project) -> None:
    push(f"{server}/streams/t/events", b'{"user": "a", "seq": 0}', "application/json")
    status, answer = push(
        f"{server}/streams/t/events", arrow_body(pl.DataFrame({"seq": ["x"]})), ARROW
    )
    assert status == 422
    assert answer["error"]["message"] == (
        "field 'seq' is String but topic 't' stores it as Int64; send Int64 values"
    )
    assert stored(project, "t").height == 1


def test_a_bad_topic_name_is_a_422_with_one_message(server: str, project: hr.Project) -> None:
    status, answer = push(f"{server}/streams/-payments/events", b"{}", "application/json")
    assert status == 422
    assert answer["error"]["message"].startswith(
        "topic name '-payments' is not allowed (it starts with '-')"
    )
    assert not (project.state_dir / "streams").exists()


def test_concurrent_pushes_each_arrive_once(server: str, project: hr.Project) -> None:
    def send(batch: int) -> int:
        records = [{"user": f"u{i % 5}", "seq": batch * 10 + i} for i in range(10)]
        url = f"{server}/streams/busy/events?key=user"
        status, body = push(url, json.dumps(records).encode(), "application/json")
        assert status == 200, body
        return int(body["events"])

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(send, range(40))) == 400
    log = stored(project, "busy")
    assert sorted(log["seq"].to_list()) == list(range(400))
    for _, part in log.group_by(PARTITION_COLUMN):
        assert part[OFFSET_COLUMN].sort().to_list() == list(range(part.height))


def test_openapi_documents_the_push(server: str) -> None:
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    operation = spec["paths"]["/streams/{topic}/events"]["post"]
    assert {"200", "400", "415", "422", "503"} <= set(operation["responses"])
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        ARROW,
    }
    assert "/features/online" in spec["paths"]
