"""Where OpenLineage events go: a JSON-lines file, an HTTP endpoint, or a Kafka topic.

A transport sends one event (a JSON-ready dict) at a time and never raises: a failure is
logged (``headrace.lineage`` logger) and counted in :attr:`Transport.failed`, and the run goes
on. Transports are used from one background thread (the emitter's), but each is also safe to
share between threads.

Why not the ``openlineage-python`` client: its transports are what we need, but it brings
``requests``, ``httpx2``, ``attrs``, ``python-dateutil``, ``packaging`` and ``pyyaml`` (12
packages, 44 MB installed here) and ~330 ms of import time per process, against the
< 2 % lineage overhead target; the three transports below are ~150 lines on the standard
library (and ``confluent-kafka`` for Kafka, as the client would use too).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headrace.core.redaction import redact

__all__ = [
    "FileTransport",
    "HttpTransport",
    "KafkaTransport",
    "Transport",
    "encode",
]

log = logging.getLogger("headrace.lineage")


def encode(event: Mapping[str, Any]) -> bytes:
    """One event as compact UTF-8 JSON (no NaN or infinity: they are not JSON)."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False, default=str).encode()


class Transport(ABC):
    """Sends events somewhere.

    Subclasses implement :meth:`send_bytes` and may override :meth:`close`; both must return
    normally whatever happens, logging what went wrong.
    """

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self._count_lock = threading.Lock()

    def emit(self, event: Mapping[str, Any]) -> bool:
        """Send one event; True when it was delivered (or handed to the broker)."""
        try:
            ok = self.send_bytes(encode(event), event)
        except Exception:  # a transport must not fail the run
            log.exception("sending an OpenLineage event with %s failed", self)
            ok = False
        with self._count_lock:
            if ok:
                self.sent += 1
            else:
                self.failed += 1
        return ok

    @abstractmethod
    def send_bytes(self, payload: bytes, event: Mapping[str, Any]) -> bool:
        """Deliver one encoded event; False (after logging why) when it could not."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Deliver what is buffered and release resources (called at the end of a run)."""


class FileTransport(Transport):
    """Appends each event as one line to a JSON-lines file (created with its folder).

    Each event is written with a single ``write`` on a file opened with ``O_APPEND``, so lines
    from several threads or processes never interleave; the line is on disk (in the page
    cache) when :meth:`emit` returns.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"FileTransport({str(self.path)!r})"

    def send_bytes(self, payload: bytes, event: Mapping[str, Any]) -> bool:
        """Append ``payload`` and a newline."""
        line = payload + b"\n"
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            written = os.write(self._fd, line)
            while written < len(line):  # a short write (rare): finish the line
                written += os.write(self._fd, line[written:])
        return True

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class HttpTransport(Transport):
    """POSTs each event to a Marquez-compatible endpoint: ``{url}/api/v1/lineage``.

    Retries connection errors, timeouts, 429 and 5xx answers ``retries`` times with
    exponential backoff (0.5 s, 1 s, 2 s, ...); other answers (4xx) are not retried. Once an
    event could not be delivered after its retries, the next ones are tried once each until
    one gets through, so an endpoint that is down costs a run one timeout per event, not
    the whole backoff. An ``api_key`` is sent as ``Authorization: Bearer ...`` and never
    logged.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        api_key: str | None = None,
    ) -> None:
        super().__init__()
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/api/v1/lineage") else f"{base}/api/v1/lineage"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._headers = {"Content-Type": "application/json", "User-Agent": "headrace"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._down = False

    def __repr__(self) -> str:
        return f"HttpTransport({redact(self.endpoint)!r})"

    def send_bytes(self, payload: bytes, event: Mapping[str, Any]) -> bool:
        """POST ``payload``, retrying what may pass on a second try."""
        problem = ""
        for attempt in range(1 if self._down else self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.endpoint, data=payload, headers=self._headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    answer.read()
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code} {exc.reason}"
                if exc.code != 429 and exc.code < 500:
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                problem = f"{type(exc).__name__}: {reason}"
            else:
                self._down = False
                return True
        else:
            self._down = True
        log.warning(
            "OpenLineage event %s of job %s not delivered to %s: %s",
            event.get("eventType"),
            event.get("job", {}).get("name"),
            redact(self.endpoint),
            problem,
        )
        return False


class KafkaTransport(Transport):
    """Produces each event to a Kafka topic (needs ``pip install 'headrace[kafka]'``).

    The topic must exist (or the brokers create topics on first use). The message key is the
    pipeline run's ``runId`` (a node's parent run id), so all events of one pipeline run land
    on one partition, in order. :meth:`close` waits for delivery, at most twice ``timeout``
    (so a broker that is down costs a run that long at its end).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        timeout: float = 5.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        try:
            from confluent_kafka import Producer
        except ImportError as exc:
            from headrace.errors import ConfigError

            msg = (
                '[lineage] transport = "kafka" needs confluent-kafka: '
                "pip install 'headrace[kafka]'"
            )
            raise ConfigError(msg) from exc
        self.topic = topic
        self.timeout = timeout
        self.servers = bootstrap_servers
        settings = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": "headrace-lineage",
            "linger.ms": 20,
            "message.timeout.ms": int(max(timeout, 1.0) * 1000 * 2),
            "logger": logging.getLogger("headrace.lineage.kafka"),  # not raw stderr
            **(config or {}),
        }
        self._producer = Producer(settings)
        self._lock = threading.Lock()
        self._undelivered = 0

    def __repr__(self) -> str:
        return f"KafkaTransport({redact(self.servers)!r}, topic={self.topic!r})"

    def send_bytes(self, payload: bytes, event: Mapping[str, Any]) -> bool:
        """Hand ``payload`` to the producer (delivery is confirmed at :meth:`close`)."""
        run = event.get("run", {})
        parent = run.get("facets", {}).get("parent", {}).get("run", {}).get("runId")
        key = str(parent or run.get("runId", ""))
        with self._lock:
            try:
                self._producer.produce(
                    self.topic, value=payload, key=key.encode(), on_delivery=self._delivered
                )
            except BufferError:
                self._producer.flush(self.timeout)
                self._producer.produce(
                    self.topic, value=payload, key=key.encode(), on_delivery=self._delivered
                )
            self._producer.poll(0)
        return True

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            with self._count_lock:
                self._undelivered += 1
            log.warning("OpenLineage event not delivered to Kafka topic %s: %s", self.topic, error)

    def close(self) -> None:
        """Wait (at most twice the timeout) until every event is delivered."""
        with self._lock:
            remaining = self._producer.flush(self.timeout * 2)
        with self._count_lock:
            lost = self._undelivered + int(remaining)
            self.failed += lost
            self.sent -= lost
        if remaining:
            log.warning(
                "%d OpenLineage event(s) still not delivered to Kafka topic %s after %.0fs",
                remaining,
                self.topic,
                self.timeout * 2,
            )
