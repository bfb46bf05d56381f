"""Open an online store from the URL or path a user wrote down (``headrace.toml``, the CLI).

Accepted forms:

- ``sqlite:///online.db`` or a plain path (``online.db``, ``/srv/online.db``): a SQLite file,
  relative paths under the project folder. ``sqlite:////abs/path.db`` is absolute, as in
  SQLAlchemy.
- ``redis://[[user]:password@]host:port/db`` or ``rediss://...`` (TLS): Redis, needs
  ``pip install headrace[redis]``.
- ``postgresql://user:password@host:5432/db`` (also ``postgres://`` and the SQLAlchemy form
  ``postgresql+psycopg://``): PostgreSQL, needs ``pip install headrace[postgres]``.
"""

from __future__ import annotations

from pathlib import Path

from headrace.core.redaction import redact
from headrace.errors import ConfigError
from headrace.storage.online.base import OnlineStore
from headrace.storage.online.sql import PostgresOnlineStore, SqliteOnlineStore

__all__ = ["open_online_store"]

_FORMS = (
    "sqlite:///path/to/online.db (or a plain path; relative to the project), "
    "redis://host:6379/0 (or rediss://), postgresql://user@host:5432/db "
    "(or postgresql+psycopg://)"
)
_POSTGRES = ("postgresql", "postgres", "postgresql+psycopg")
_REDIS = ("redis", "rediss")


def open_online_store(url_or_path: str, *, base_dir: Path, namespace: str = "") -> OnlineStore:
    """The online store ``url_or_path`` names; relative SQLite paths resolve under ``base_dir``.

    ``namespace`` (the project name) keeps projects sharing one Redis database apart: their
    keys start with ``headrace:<namespace>:``. A SQLite file belongs to one project already;
    give each project its own PostgreSQL database.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with open_online_store("sqlite:///online.db", base_dir=Path(folder)) as store:
    ...         store.kind, store.describe() == f"sqlite:///{Path(folder) / 'online.db'}"
    ('sqlite', True)
    """
    text = url_or_path.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _sqlite(text, text, base_dir)
    scheme = scheme.lower()
    if scheme == "sqlite" and rest.startswith("/"):
        return _sqlite(rest[1:], text, base_dir)
    if scheme in _REDIS:
        try:
            from headrace.storage.online.redis import RedisOnlineStore
        except ModuleNotFoundError as exc:
            if exc.name not in ("redis", "orjson"):
                raise
            msg = f"the online store {redact(text)!r} needs {exc.name}: pip install headrace[redis]"
            raise ConfigError(msg) from exc
        prefix = f"headrace:{namespace}" if namespace else "headrace"
        return RedisOnlineStore(text, prefix=prefix)
    if scheme in _POSTGRES:
        return PostgresOnlineStore(text)
    msg = f"unknown online store {redact(text)!r}; use one of: {_FORMS}"
    raise ConfigError(msg)


def _sqlite(path_text: str, written: str, base_dir: Path) -> SqliteOnlineStore:
    if not path_text or path_text == ":memory:" or path_text.startswith("file:"):
        msg = (
            f"online store {redact(written)!r} is not a SQLite file path; an in-memory database "
            f"is not shared between threads, so give a file, e.g. sqlite:///online.db"
        )
        raise ConfigError(msg)
    path = Path(path_text).expanduser()
    return SqliteOnlineStore(path if path.is_absolute() else base_dir / path)
