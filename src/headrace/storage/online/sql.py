"""SQL online stores: SQLite (one local file) and PostgreSQL, one implementation over the DB-API.

Each :class:`~headrace.storage.online.base.OnlineTable` is one SQL table named after
``table.name``, created on its first write::

    k TEXT PRIMARY KEY, event_us BIGINT NOT NULL, created_us BIGINT, "<feature>" <type>, ...

with the feature types taken from the kinds (``float``, ``int``, ``bool``, ``str``). A write is
one transaction of ``INSERT ... ON CONFLICT (k) DO UPDATE ... WHERE`` statements whose ``WHERE``
keeps the entry with the greater ``(event_us, created_us)``, so racing writers and replays are
safe. A read is one ``SELECT`` (SQLite splits more than 900 keys into several).

Every thread gets its own connection: FastAPI may serve lookups from a thread pool, and neither
a SQLite connection nor a psycopg transaction may be shared between threads. Connections of
finished threads are closed when the next thread connects, and all of them by :meth:`close`.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar

from headrace.core.redaction import redact
from headrace.errors import ConfigError, OnlineStoreError
from headrace.storage.online.base import OnlineEntry, OnlineRows, OnlineStore, OnlineTable

__all__ = ["PostgresOnlineStore", "SqliteOnlineStore"]

_RESERVED = frozenset({"k", "event_us", "created_us"})
_SQLITE_MAX_KEYS = 900
"""Keys per SQLite ``IN (...)``: below the smallest ``SQLITE_MAX_VARIABLE_NUMBER`` (999)."""
_KINDS = ("float", "int", "bool", "str")
_SQLITE_TYPES = dict(zip(_KINDS, ("REAL", "INTEGER", "INTEGER", "TEXT"), strict=True))
_POSTGRES_TYPES = dict(zip(_KINDS, ("DOUBLE PRECISION", "BIGINT", "BOOLEAN", "TEXT"), strict=True))
_SCHEMA_HINT = (
    "; if the rows do not fit the table (its features changed without a new view version), "
    "drop the table and materialise again"
)


class _Plan:
    """The SQL text of one table in one dialect, built once and reused by every call."""

    __slots__ = ("bools", "create", "drop", "name", "select", "select_any", "upsert")

    def __init__(self, table: OnlineTable, types: Mapping[str, str], param: str) -> None:
        quote = _quote_pg if param == "%s" else _quote
        _check_table(table, types)
        self.name = table.name
        name = quote(table.name)
        columns = [quote(feature) for feature in table.features]
        declared = "".join(
            f", {column} {types[kind]}" for column, kind in zip(columns, table.kinds, strict=True)
        )
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {name} "
            f"(k TEXT PRIMARY KEY, event_us BIGINT NOT NULL, created_us BIGINT{declared})"
        )
        self.drop = f"DROP TABLE IF EXISTS {name}"
        everything = ["k", "event_us", "created_us", *columns]
        updates = ", ".join(f"{column} = excluded.{column}" for column in everything[1:])
        self.upsert = (
            f"INSERT INTO {name} ({', '.join(everything)}) "
            f"VALUES ({', '.join([param] * len(everything))}) "
            f"ON CONFLICT (k) DO UPDATE SET {updates} "
            f"WHERE (excluded.event_us, COALESCE(excluded.created_us, -1)) "
            f">= ({name}.event_us, COALESCE({name}.created_us, -1))"
        )
        self.select = f"SELECT {', '.join(everything)} FROM {name} WHERE k IN "
        self.select_any = f"SELECT {', '.join(everything)} FROM {name} WHERE k = ANY(%s)"
        native = types["bool"] == "BOOLEAN"
        self.bools = () if native else tuple(i for i, k in enumerate(table.kinds) if k == "bool")

    def entry(self, row: Sequence[Any]) -> OnlineEntry:
        """A selected row as an entry (SQLite gives booleans back as 0/1)."""
        values = tuple(row[3:])
        if self.bools:
            listed = list(values)
            for i in self.bools:
                if listed[i] is not None:
                    listed[i] = bool(listed[i])
            values = tuple(listed)
        return OnlineEntry(row[1], row[2], values)


def _check_table(table: OnlineTable, types: Mapping[str, str]) -> None:
    problem = ""
    if len(table.features) != len(table.kinds):
        problem = f"has {len(table.features)} features but {len(table.kinds)} kinds"
    for feature, kind in zip(table.features, table.kinds, strict=False):
        if feature.lower() in _RESERVED:
            problem = f"has feature {feature!r}, a name the store uses; rename the feature"
        elif kind not in types:
            problem = f"has feature {feature!r} of kind {kind!r}; kinds are {', '.join(types)}"
    if types is _POSTGRES_TYPES and len(table.name.encode()) > 63:
        problem = "is a longer name than PostgreSQL allows (63 bytes); shorten the view's name"
    if problem:
        msg = f"online table {table.name!r} {problem}"
        raise OnlineStoreError(msg)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _quote_pg(identifier: str) -> str:
    # psycopg reads % as a placeholder marker in every statement run with parameters.
    return _quote(identifier).replace("%", "%%")


class _SqlOnlineStore(OnlineStore):
    """The shared implementation: per-thread connections, cached SQL, ordered upserts."""

    _types: ClassVar[Mapping[str, str]]
    _param: ClassVar[str]
    _errors: tuple[type[Exception], ...]
    _hint: ClassVar[str]

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[threading.Thread, Any]] = []
        self._created: set[str] = set()
        self._plans: dict[OnlineTable, _Plan] = {}
        self._closed = False
        self._connection()  # fail at open, not at the first lookup

    # -- what a dialect provides -------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection in autocommit mode (transactions are explicit)."""

    @abstractmethod
    def _transaction(self, conn: Any) -> Any:
        """A context manager: one write transaction on ``conn``, yielding a cursor."""

    @abstractmethod
    def _select(self, conn: Any, plan: _Plan, keys: Sequence[str]) -> list[Any]:
        """The stored rows of ``keys`` (any order, missing keys absent)."""

    @abstractmethod
    def _missing_table(self, exc: Exception) -> bool:
        """Whether ``exc`` says the table does not exist."""

    def _created_concurrently(self, exc: Exception) -> bool:
        return False  # whether another writer created the table at the same moment

    def _is_broken(self, conn: Any) -> bool:
        return False  # whether ``conn`` is unusable, to be replaced by a new one

    def _in_lock_order(self, params: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return params  # rows in the order to lock them (SQLite locks the whole file)

    # -- the contract ------------------------------------------------------------------------

    def write(self, table: OnlineTable, rows: OnlineRows) -> int:
        """Upsert ``rows`` in one transaction; the greater ``(event_us, created_us)`` wins."""
        if not len(rows):
            return 0
        plan = self._plan(table)
        params = [
            (key, event, created, *values)
            for key, event, created, values in zip(
                rows.keys, rows.event_us, rows.created_us, rows.values, strict=True
            )
        ]
        conn = self._connection()
        try:
            return self._upsert(conn, plan, params)
        except self._errors as exc:
            self._check(conn)
            if not self._missing_table(exc):
                raise self._failure(exc, doing=f"cannot write table {table.name!r} to") from exc
        # Dropped behind this store's back (by another process or store): create it again.
        self._created.discard(plan.name)
        try:
            return self._upsert(conn, plan, params)
        except self._errors as exc:
            self._check(conn)
            raise self._failure(exc, doing=f"cannot write table {table.name!r} to") from exc

    def read(self, table: OnlineTable, keys: Sequence[str]) -> list[OnlineEntry | None]:
        """The entries of ``keys`` in order; None for unknown keys and unwritten tables."""
        if not keys:
            return []
        plan = self._plan(table)
        conn = self._connection()
        try:
            rows = self._select(conn, plan, keys)
        except self._errors as exc:
            self._check(conn)
            if self._missing_table(exc):
                return [None] * len(keys)
            raise self._failure(exc, doing=f"cannot read table {table.name!r} from") from exc
        found = {row[0]: row for row in rows}
        entry = plan.entry
        return [None if (row := found.get(key)) is None else entry(row) for key in keys]

    def drop(self, tables: Iterable[OnlineTable]) -> None:
        """Drop the tables (tables never written are fine)."""
        conn = self._connection()
        for table in tables:
            plan = self._plan(table)
            self._created.discard(plan.name)
            try:
                conn.execute(plan.drop, ())
            except self._errors as exc:
                self._check(conn)
                raise self._failure(exc, doing=f"cannot drop table {table.name!r} from") from exc

    def close(self) -> None:
        """Close the connections of every thread."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for _, conn in connections:
            with suppress(*self._errors):
                conn.close()
        self._local = threading.local()

    # -- internals ---------------------------------------------------------------------------

    def _plan(self, table: OnlineTable) -> _Plan:
        plan = self._plans.get(table)
        if plan is None:
            plan = self._plans[table] = _Plan(table, self._types, self._param)
        return plan

    def _upsert(self, conn: Any, plan: _Plan, params: list[tuple[Any, ...]]) -> int:
        if plan.name not in self._created:
            try:
                conn.execute(plan.create, ())
            except self._errors as exc:
                if not self._created_concurrently(exc):
                    raise
            self._created.add(plan.name)
        with self._transaction(conn) as cursor:
            cursor.executemany(plan.upsert, self._in_lock_order(params))
            changed: int = cursor.rowcount
        return changed

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        if self._closed:
            msg = f"the online store {self.describe()} is closed; open a new one"
            raise OnlineStoreError(msg)
        try:
            conn = self._connect()
        except (self._errors[0], OSError) as exc:
            raise self._failure(exc, doing="cannot connect to") from exc
        with self._lock:
            finished = [(t, c) for t, c in self._connections if not t.is_alive()]
            self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
            self._connections.append((threading.current_thread(), conn))
        for _, old in finished:
            with suppress(*self._errors):
                old.close()
        self._local.conn = conn
        return conn

    def _check(self, conn: Any) -> None:
        """After an error: forget ``conn`` if it is broken, so the next call reconnects."""
        if self._is_broken(conn):
            self._local.conn = None
            with self._lock:
                self._connections = [(t, c) for t, c in self._connections if c is not conn]
            with suppress(*self._errors):
                conn.close()

    def _failure(self, exc: BaseException, *, doing: str) -> OnlineStoreError:
        lines = str(exc).strip().splitlines()
        reason = redact(lines[0] if lines else type(exc).__name__).rstrip(".")
        where = self.describe()
        hint = self._hint if doing.startswith("cannot connect") else self._hint + _SCHEMA_HINT
        return OnlineStoreError(f"{doing} the online store {where}: {reason}; {hint}")


class SqliteOnlineStore(_SqlOnlineStore):
    """An online store in one SQLite file (WAL mode), for a single machine.

    Good for development and for serving from the machine that materialises: reads take
    tens of microseconds. Several processes may share the file; writes are serialised by
    SQLite's lock (a writer waits up to 30 s for another).

    >>> import tempfile
    >>> from headrace.storage.online.base import OnlineRows, OnlineTable, encode_key
    >>> table = OnlineTable("carrier_stats", 1, ("delay",), ("float",))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with SqliteOnlineStore(Path(folder) / "online.db") as store:
    ...         store.write(table, OnlineRows([encode_key(["AA"])], [10], [None], [(4.5,)]))
    ...         store.read(table, [encode_key(["AA"]), encode_key(["UA"])])
    1
    [OnlineEntry(event_us=10, created_us=None, values=(4.5,)), None]
    """

    kind = "sqlite"
    _types = _SQLITE_TYPES
    _param = "?"
    _errors = (sqlite3.Error, OverflowError)
    _hint = (
        "check that the file's folder exists and is writable and that the file is a SQLite database"
    )

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._in: dict[int, str] = {}
        super().__init__()

    def describe(self) -> str:
        """The file's URL, ``sqlite:///<path>``."""
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=30.0,
            isolation_level=None,
            check_same_thread=False,  # one thread uses it; close() may run on another
            cached_statements=512,
        )
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA mmap_size=268435456")  # reads ~15% faster than via read()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock later
        try:
            yield conn.cursor()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    def _select(self, conn: Any, plan: _Plan, keys: Sequence[str]) -> list[Any]:
        listed = keys if isinstance(keys, list) else list(keys)
        if len(listed) <= _SQLITE_MAX_KEYS:
            sql = plan.select + self._marks(len(listed))
            return conn.execute(sql, listed).fetchall()  # type: ignore[no-any-return]
        rows = []
        for start in range(0, len(listed), _SQLITE_MAX_KEYS):
            chunk = listed[start : start + _SQLITE_MAX_KEYS]
            rows.extend(conn.execute(plan.select + self._marks(len(chunk)), chunk).fetchall())
        return rows

    def _marks(self, count: int) -> str:
        marks = self._in.get(count)
        if marks is None:
            marks = self._in[count] = "(" + ",".join("?" * count) + ")"
        return marks

    def _missing_table(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


class PostgresOnlineStore(_SqlOnlineStore):
    """An online store in a PostgreSQL database (psycopg 3), shared by many machines.

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db``); the SQLAlchemy form
    ``postgresql+psycopg://`` is accepted too. Statements are prepared by the server after a
    few uses, and a batch is sent pipelined in one transaction.
    """

    kind = "postgresql"
    _types = _POSTGRES_TYPES
    _param = "%s"
    _hint = (
        "check the online store URL, that the PostgreSQL server is running and reachable and "
        "that the user may create tables"
    )

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ModuleNotFoundError as exc:
            msg = "the PostgreSQL online store needs psycopg: pip install headrace[postgres]"
            raise ConfigError(msg) from exc
        self.url = url
        scheme, sep, rest = url.partition("://")
        self._conninfo = f"postgresql://{rest}" if sep and scheme.startswith("postgresql+") else url
        self._psycopg = psycopg
        self._errors = (psycopg.Error, OverflowError)
        super().__init__()

    def describe(self) -> str:
        """The URL without its password."""
        return redact(self.url)

    def _connect(self) -> Any:
        extra: dict[str, Any] = {} if "connect_timeout" in self.url else {"connect_timeout": 10}
        return self._psycopg.connect(self._conninfo, autocommit=True, **extra)

    @contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cursor:
            yield cursor

    def _select(self, conn: Any, plan: _Plan, keys: Sequence[str]) -> list[Any]:
        # Binary results: half the time of text for 100 keys of 50 floats (no float parsing).
        rows: list[Any] = conn.execute(plan.select_any, (list(keys),), binary=True).fetchall()
        return rows

    def _missing_table(self, exc: Exception) -> bool:
        return isinstance(exc, self._psycopg.errors.UndefinedTable)

    def _created_concurrently(self, exc: Exception) -> bool:
        errors = self._psycopg.errors
        return isinstance(exc, errors.UniqueViolation | errors.DuplicateTable)

    def _is_broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def _in_lock_order(self, params: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # Row locks taken in key order: two batches touching the same keys cannot deadlock.
        # The sort is stable, so repeats of one key keep their order within the batch.
        params.sort(key=itemgetter(0))
        return params
