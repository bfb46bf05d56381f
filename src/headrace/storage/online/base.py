"""The online store contract: what every backend (SQLite, PostgreSQL, Redis) must do.

An online store keeps, per *table* (one feature view version) and per entity key, the newest
feature row: its event time, its created time and one value per feature. It is written by
materialisation (batch) and by the streaming engine, and read by lookups.

Implementing a backend
----------------------

Subclass :class:`OnlineStore` and implement :meth:`write`, :meth:`read`, :meth:`drop` and
:meth:`close`:

- ``write(table, rows)`` upserts ``rows`` (an :class:`OnlineRows` batch) and returns how many
  entity entries it changed. It must be **ordered by event time**: an entry is replaced only
  when the incoming ``(event_us, created_us)`` is greater than or equal to the stored one
  (``created_us`` None counts as -1), so a replay of the same batch is a no-op in effect and a
  late batch never overwrites a newer value. The comparison must happen inside the store
  atomically (an ``ON CONFLICT ... WHERE`` clause, a Lua script), never as read-then-write in
  Python, because several writers may race. A batch must be applied in one round trip or
  transaction where the backend allows it.
- ``read(table, keys)`` returns, for each encoded key in order, an :class:`OnlineEntry` or
  ``None`` when the store has nothing for it. It must not raise for an unknown key or for a
  table that was never written (that is "missing", not an error). One round trip per call.
- Backend failures (connection refused, timeouts, authentication) are converted to
  :class:`~headrace.errors.OnlineStoreError` naming the store (without its password) and the
  fix, with ``raise ... from exc``.
- A store must never print or log a password.

Keys are encoded once, by :func:`encode_key`, so every backend stores them alike. Values are
JSON-able scalars (``None``, bool, int, float, str); materialisation converts temporal values
to ISO-8601 text before writing.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

__all__ = [
    "OnlineEntry",
    "OnlineRows",
    "OnlineStore",
    "OnlineTable",
    "encode_key",
    "encode_keys",
]

Scalar = None | bool | int | float | str


def encode_key(values: Sequence[Any]) -> str:
    """The canonical text of one entity key (the join-key values in order).

    >>> encode_key(["AA"]), encode_key(["JFK", 2013])
    ('["AA"]', '["JFK",2013]')
    """
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def encode_keys(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    """:func:`encode_key` of every row of ``frame[columns]``, vectorised where it can be.

    String and integer keys are put together by Polars (strings needing JSON escapes, and
    other types, go through :func:`encode_key` row by row), so the text is the same.

    >>> encode_keys(pl.DataFrame({"a": ["x", "y"], "n": [1, 2]}), ["a", "n"])
    ['["x",1]', '["y",2]']
    """
    parts: list[pl.Expr] = []
    for column in columns:
        dtype = frame.schema[column]
        col = pl.col(column)
        if dtype == pl.String:
            parts.append(pl.lit('"') + col + pl.lit('"'))
        elif dtype.is_integer():
            parts.append(col.cast(pl.String))
        else:
            return [encode_key(k) for k in frame.select(columns).rows()]
    text = pl.lit("[") + pl.concat_str(parts, separator=",") + pl.lit("]")
    strings = [c for c in columns if frame.schema[c] == pl.String]
    plain = ~pl.any_horizontal(
        [pl.col(c).str.contains(_NEEDS_ESCAPE) for c in strings] or [pl.lit(value=False)]
    )
    nulls = pl.any_horizontal(pl.col(c).is_null() for c in columns)
    encoded = frame.select(text.alias("text"), (plain & ~nulls).alias("fast"))
    if bool(encoded["fast"].all()):
        return encoded["text"].to_list()
    slow = frame.select(columns).rows()
    return [
        t if fast else encode_key(slow[i])
        for i, (t, fast) in enumerate(zip(encoded["text"], encoded["fast"], strict=True))
    ]


@dataclass(frozen=True)
class OnlineTable:
    """Where one feature view version lives in an online store.

    ``name`` is a stable, identifier-safe table name (``<view>__v<version>``); ``features``
    the value columns in order, with ``kinds`` their value kind (``float``, ``int``, ``bool``,
    ``str``) so typed backends can declare columns.
    """

    view: str
    version: int
    features: tuple[str, ...]
    kinds: tuple[str, ...]

    @property
    def name(self) -> str:
        """The backend table / key-prefix name."""
        return f"{self.view}__v{self.version}"


@dataclass(frozen=True)
class OnlineRows:
    """A batch of entries to upsert, as parallel lists (one element per entity key)."""

    keys: list[str]
    """Encoded keys (see :func:`encode_key`)."""
    event_us: list[int]
    """Event time, microseconds since the Unix epoch (UTC)."""
    created_us: list[int | None]
    """Created time in microseconds, or None when the view has no created-time column."""
    values: list[tuple[Scalar, ...]]
    """One tuple per key, in the table's feature order."""

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class OnlineEntry:
    """What the store holds for one entity key of one table."""

    event_us: int
    created_us: int | None
    values: tuple[Scalar, ...]


class OnlineStore(ABC):
    """An online store backend. See the module docstring for what implementers must do."""

    kind: str = "abstract"
    """Short backend name shown to users (``sqlite``, ``postgresql``, ``redis``)."""

    @abstractmethod
    def write(self, table: OnlineTable, rows: OnlineRows) -> int:
        """Upsert ``rows`` into ``table``, newer-or-equal event time wins; entries changed."""

    @abstractmethod
    def read(self, table: OnlineTable, keys: Sequence[str]) -> list[OnlineEntry | None]:
        """The entries of ``keys`` (encoded) in order; None where the store has none."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    @abstractmethod
    def drop(self, tables: Iterable[OnlineTable]) -> None:
        """Remove tables entirely (their entries and any schema objects)."""

    def describe(self) -> str:
        """Where the store is, for messages (never with a password)."""
        return self.kind

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
