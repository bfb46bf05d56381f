"""What can get better by waiting, and what cannot: retries with backoff, errors that say why.

What can get better by waiting (connection refused, the server shutting down or starting, a
connection dropped mid-read, too many connections) is retried ``spec.retries`` times,
``spec.retry_delay`` seconds doubling after each attempt, then
:class:`~headrace.errors.SourceUnavailableError`. What cannot get better (unknown scheme,
database, table or column, authentication, SQL errors, values that do not fit their type) is
one :class:`~headrace.errors.SourceError`, never retried. Retry counts restart after a frame
is handed over: ``retries`` bounds failures *in a row*.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from headrace.connectors.sql.target import _Target
from headrace.core.source import SqlSource
from headrace.errors import SourceError, SourceUnavailableError

log = logging.getLogger("headrace.connectors.sql")  # the name it had before the split

# Order matters: a message naming a missing database also says the connection failed.
_PERMANENT = re.compile(
    r"does not exist|doesn't exist|unknown (database|column|table)|no such (table|column)"
    r"|access denied|authentication failed|permission denied|syntax|invalid"
    r"|could not translate host name|not supported|conversion|parseerror|cannot infer type",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"connection refused|could not connect|can't connect|timed out|timeout|connection reset"
    r"|broken pipe|server closed the connection|terminating connection|connection .*closed"
    r"|lost connection|gone away|shutting down|starting up|too many connections"
    r"|no route to host|network is unreachable|unexpected eof|in recovery|os error 1(04|10|11)",
    re.IGNORECASE,
)
_UNKNOWN_OBJECT = re.compile(
    r"relation|table|column|no such|unknown column|syntax|function", re.IGNORECASE
)

_HARD_STOPS = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _is_transient(exc: BaseException, target: _Target) -> bool:
    if target.dialect == "sqlite":
        return False
    text = str(exc)
    if _PERMANENT.search(text):
        return False
    return bool(_TRANSIENT.search(text)) or isinstance(exc, ConnectionError | TimeoutError)


def _detail(exc: BaseException, target: _Target) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines[:2]) or type(exc).__name__
    return target.scrub(text)


def _permanent_error(exc: BaseException, target: _Target, what: str) -> SourceError:
    detail = _detail(exc, target)
    if re.search(r"conversion|parseerror|cannot infer type", detail, re.IGNORECASE):
        fix = (
            "a value does not match its column's declared type (SQLite DATE/DATETIME columns "
            "need 'YYYY-MM-DD[ HH:MM:SS[.ffffff]]' text): cast the column in a query=, e.g. "
            "CAST(col AS TEXT)"
        )
    elif _UNKNOWN_OBJECT.search(detail) and "connect" not in detail.lower():
        fix = "check table=, query=, cursor= and partition_on= against the database"
    else:
        fix = "check the DSN (scheme, host, database, user and password)"
    return SourceError(f"{what} on {target.shown} failed: {detail}; {fix}")


class _Retry:
    """Attempts of one read against one target: backoff, then SourceUnavailableError."""

    def __init__(self, spec: SqlSource, target: _Target, what: str) -> None:
        self.spec, self.target, self.what = spec, target, what
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        """Sleep before the next attempt, or raise the error that ends the read."""
        if isinstance(exc, SourceError):
            if str(exc).startswith(self.what):
                raise exc
            msg = f"{self.what}: {exc}"
            raise type(exc)(msg) from exc
        if not _is_transient(exc, self.target):
            raise _permanent_error(exc, self.target, self.what) from exc
        self.failures += 1
        detail = _detail(exc, self.target)
        if self.failures > self.spec.retries:
            msg = (
                f"{self.what}: {self.target.shown} stayed unreachable through "
                f"{self.failures} attempts ({detail}); check that the server is running and "
                "reachable from here, or raise the source's retries=/retry_delay="
            )
            raise SourceUnavailableError(msg) from exc
        delay = self.spec.retry_delay * 2 ** (self.failures - 1)
        log.warning(
            "%s: %s (attempt %d of %d), retrying in %.1fs",
            self.what,
            detail,
            self.failures,
            self.spec.retries + 1,
            delay,
        )
        time.sleep(delay)

    def call(self, fn: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        while True:
            try:
                return fn()
            except BaseException as exc:
                if isinstance(exc, _HARD_STOPS):
                    raise
                self.failed(exc)
