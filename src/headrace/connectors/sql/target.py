"""A DSN into what the reading library takes: URL, dialect, and the password kept out of sight.

``${VAR}`` in a DSN is read from the environment. Credentials never appear in a message or a
log line: DSNs are shown through :func:`~headrace.core.redaction.redact` and
:meth:`_Target.scrub` takes the password out of library errors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from headrace.core.redaction import redact
from headrace.errors import SourceError

Dialect = Literal["postgresql", "mysql", "sqlite"]

_SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_APPLICATION_NAME = "headrace"


@dataclass(frozen=True)
class _Target:
    dialect: Dialect
    url: str
    """The URL for the reading library (may hold the password: never show it)."""
    shown: str
    """The DSN with the password masked, for messages."""
    secret: str | None
    path: Path | None = None
    """The database file (SQLite)."""

    def scrub(self, text: str) -> str:
        """``text`` without URLs' passwords or this target's password."""
        text = redact(text)
        if self.secret and len(self.secret) >= 3:
            for form in {self.secret, quote(self.secret, safe="")}:
                text = text.replace(form, "***")
        return text


def _expand(dsn: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            msg = (
                f"the DSN {redact(dsn)!r} names ${{{name}}}, which is not set in the "
                f"environment: export {name}=... (or put it in the project's .env)"
            )
            raise SourceError(msg)
        return found

    return _ENV_VAR.sub(value, dsn)


def _target(dsn: str, base_dir: Path) -> _Target:
    expanded = _expand(dsn)
    scheme, sep, rest = expanded.partition("://")
    dialect = _SCHEMES.get(scheme.split("+", 1)[0].lower()) if sep else None
    if dialect is None:
        msg = (
            f"the DSN {redact(dsn)!r} has an unknown scheme: use postgresql://, mysql://, "
            "mariadb:// or sqlite:///path (a SQLAlchemy driver suffix such as +psycopg is fine)"
        )
        raise SourceError(msg)
    if dialect == "sqlite":
        return _sqlite_target(dsn, rest, base_dir)
    url = f"{dialect}://{rest}"
    parts = urlsplit(url)
    secret = unquote(parts.password) if parts.password else None
    if dialect == "postgresql":
        options = [o for o in (parts.query.split("&") if parts.query else []) if o]
        keys = {o.split("=", 1)[0] for o in options}
        if "application_name" not in keys:
            options.append(f"application_name={_APPLICATION_NAME}")
        if "connect_timeout" not in keys:
            options.append("connect_timeout=10")
        url = parts._replace(query="&".join(options)).geturl()
    target = _Target(dialect, url, "", secret)
    return replace(target, shown=target.scrub(expanded))


def _sqlite_target(dsn: str, rest: str, base_dir: Path) -> _Target:
    # SQLAlchemy: sqlite:///relative/path, sqlite:////absolute/path.
    raw = unquote(rest.split("?", 1)[0])
    if not raw.startswith("/") or raw in {"/", "/:memory:"}:
        msg = f"the DSN {dsn!r} names no database file: use sqlite:///relative.db or sqlite:////abs"
        raise SourceError(msg)
    path = Path(raw[1:])
    path = path if path.is_absolute() else (base_dir / path)
    path = path.resolve()
    if not path.is_file():
        msg = f"the DSN {dsn!r} names the SQLite file {path}, which does not exist"
        raise SourceError(msg)
    return _Target("sqlite", "sqlite://" + quote(str(path)), dsn, None, path)
