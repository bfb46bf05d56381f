"""Where alerts go: Python logging, a webhook (JSON POST), a command (JSON on stdin).

Every sink returns an :class:`~headrace.storage.monitoring.AlertDelivery` — it never raises,
so one broken sink cannot keep an alert from the others, nor fail a run. What the webhook and
the command receive is :func:`alert_payload`: the alert's fields as JSON, e.g.::

    {"project": "flights", "alert_id": "20261127T101500-9f3a1c2b", "rule": "quality below 0.9",
     "kind": "quality", "severity": "warning", "fired_at": "2026-11-27T10:15:00+00:00",
     "message": "...", "pipeline": "flights", "run_id": "...", "node": "flights_clean",
     "partition": null, "observed": 0.82, "threshold": 0.9, "evidence": {...}}

Secrets stay out of logs and records: URLs are shown as ``scheme://host:port`` only (webhook
paths often carry tokens), error texts pass through :func:`~headrace.core.redaction.redact`,
and ``${VAR}`` placeholders in URLs, headers and command arguments are filled from the
environment only at send time.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from headrace.core.redaction import redact
from headrace.monitor.settings import SinkSettings
from headrace.storage.monitoring import AlertDelivery, AlertRecord

__all__ = [
    "AlertSink",
    "CommandSink",
    "LogSink",
    "WebhookSink",
    "alert_payload",
    "build_sinks",
    "display_url",
]

log = logging.getLogger("headrace.alerts")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class _MissingVariableError(Exception):
    pass


def _expand(text: str) -> str:
    def fill(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise _MissingVariableError(match.group(1))
        return value

    return _PLACEHOLDER.sub(fill, text)


def display_url(url: str) -> str:
    """``scheme://host:port`` of ``url``, without credentials, path or query.

    >>> display_url("https://user:pw@hooks.example.com/services/T0/B0/secret?x=1")
    'https://hooks.example.com/…'
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    return f"{parts.scheme}://{host}{port}/…"


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without ``user:password@``, and the basic-auth header that carries them."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {
        "Authorization": f"Basic {token}"
    }


def alert_payload(alert: AlertRecord, *, project: str = "") -> dict[str, Any]:
    """The JSON-ready body a webhook or a command receives for ``alert``."""
    data = alert.to_dict()
    data.pop("deliveries", None)
    return {"project": project, **data}


class AlertSink(Protocol):
    """Something that takes alerts. Implementations must not raise from :meth:`deliver`.

    ``deliver`` gets the alert and its JSON payload and reports what happened as an
    :class:`AlertDelivery` (``ok``, attempts made, the redacted reason of a failure). It runs
    in the thread that finished the run, so it should give up in bounded time (a timeout).
    """

    name: str
    kind: str

    def deliver(self, alert: AlertRecord, payload: Mapping[str, Any]) -> AlertDelivery:
        """Send one alert."""
        ...


def _delivery(
    sink: AlertSink, *, ok: bool, attempts: int, error: str | None = None
) -> AlertDelivery:
    return AlertDelivery(
        sink=sink.name,
        kind=sink.kind,
        ok=ok,
        attempts=attempts,
        at=datetime.now(UTC),
        error=None if error is None else redact(error),
    )


class LogSink:
    """Alerts as records of the ``headrace.alerts`` logger (INFO, WARNING or ERROR by severity).

    The message is plain text (no markup), so it reads the same through a Rich handler; the
    payload is attached as the record's ``alert`` attribute for structured handlers.
    """

    kind = "log"

    def __init__(self, name: str = "log") -> None:
        self.name = name

    def deliver(self, alert: AlertRecord, payload: Mapping[str, Any]) -> AlertDelivery:
        """Log the alert."""
        log.log(
            _LEVELS.get(alert.severity, logging.WARNING),
            "alert [%s] %s",
            alert.severity,
            redact(alert.message),
            extra={"alert": dict(payload)},
        )
        return _delivery(self, ok=True, attempts=1)


class WebhookSink:
    """A JSON POST per alert, retried with exponential backoff on transient failures.

    Transient: connection errors, timeouts, HTTP 408/425/429 and 5xx. Any other 4xx answer is
    final (retrying an unauthorised or malformed request does not help).
    """

    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r}, {display_url(self.url)!r})"

    def deliver(self, alert: AlertRecord, payload: Mapping[str, Any]) -> AlertDelivery:
        """POST the payload; retry transient failures."""
        where = display_url(self.url)
        try:
            url = _expand(self.url)
            headers = {k: _expand(v) for k, v in self.headers.items()}
        except _MissingVariableError as exc:
            return _delivery(
                self, ok=False, attempts=0, error=f"environment variable {exc} is not set"
            )
        url, auth = _split_credentials(url)
        body = json.dumps(payload, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "headrace", **auth, **headers}
        error = ""
        attempt = 0
        for attempt in range(1, self.retries + 2):
            if attempt > 1:
                self._sleep(self.backoff * 2 ** (attempt - 2))
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                return _delivery(self, ok=True, attempts=attempt)
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} from {where}"
                exc.close()
                if exc.code not in _RETRY_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                error = f"{where} unreachable: {reason}"
            log.debug("webhook %s attempt %d failed: %s", self.name, attempt, redact(error))
        log.warning("alert %s not delivered to webhook %s: %s", alert.alert_id, self.name, error)
        return _delivery(self, ok=False, attempts=attempt, error=error)


class CommandSink:
    """Runs a program per alert with the alert's JSON on stdin (no shell; a timeout).

    The working directory is the project folder. A non-zero exit, a missing program or a
    timeout is a failed delivery carrying the last line the program wrote to stderr.
    """

    kind = "command"

    def __init__(
        self,
        name: str,
        command: Sequence[str] | str,
        *,
        timeout: float = 10.0,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = tuple(shlex.split(command) if isinstance(command, str) else command)
        self.timeout = timeout
        self.cwd = cwd

    def __repr__(self) -> str:
        return f"CommandSink({self.name!r}, {self.argv[:1]!r})"

    def deliver(self, alert: AlertRecord, payload: Mapping[str, Any]) -> AlertDelivery:
        """Run the command with the payload on stdin."""
        try:
            argv = [_expand(arg) for arg in self.argv]
        except _MissingVariableError as exc:
            return _delivery(
                self, ok=False, attempts=0, error=f"environment variable {exc} is not set"
            )
        body = json.dumps(payload, default=str).encode()
        try:
            done = subprocess.run(  # argv from the project's own settings
                argv,
                input=body,
                capture_output=True,
                timeout=self.timeout,
                cwd=self.cwd,
                check=False,
            )
        except FileNotFoundError:
            error = f"command {self.argv[0]!r} not found; check [alerts.sinks.{self.name}]"
        except subprocess.TimeoutExpired:
            error = f"command {self.argv[0]!r} did not finish within {self.timeout:g} s"
        except OSError as exc:
            error = f"command {self.argv[0]!r} cannot run: {exc}"
        else:
            if done.returncode == 0:
                return _delivery(self, ok=True, attempts=1)
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            tail = f": {lines[-1]}" if lines else ""
            error = f"command {self.argv[0]!r} exited with status {done.returncode}{tail}"
        log.warning("alert %s not delivered to command %s: %s", alert.alert_id, self.name, error)
        return _delivery(self, ok=False, attempts=1, error=error)


def build_sinks(
    sinks: Mapping[str, SinkSettings],
    *,
    base_dir: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, AlertSink]:
    """The sinks declared in ``[alerts.sinks]``, plus the built-in ``log``."""
    built: dict[str, AlertSink] = {"log": LogSink()}
    for name, spec in sinks.items():
        if spec.kind == "webhook":
            assert spec.url is not None
            built[name] = WebhookSink(
                name,
                spec.url,
                headers=spec.headers,
                timeout=spec.timeout,
                retries=spec.retries,
                backoff=spec.backoff,
                sleep=sleep,
            )
        elif spec.kind == "command":
            assert spec.command is not None
            built[name] = CommandSink(name, spec.command, timeout=spec.timeout, cwd=base_dir)
        else:
            built[name] = LogSink(name)
    return built
