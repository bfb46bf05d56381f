"""Source specs: where an ingest node reads from, as plain declarative data.

A spec says *what* to read (a file glob, a table or query behind a DSN) and how to read it
incrementally; :mod:`headrace.connectors` does the reading. The same specs can be written in
Python or in ``headrace.toml``:

Example:
    >>> import headrace as hr
    >>> hr.files("data/flights_*.csv.gz", incremental=True).format_of("data/a.csv.gz")
    'csv'
    >>> spec = source_from_mapping("weather", {"type": "sql", "dsn": "${PG_DSN}", "table": "w"})
    >>> spec.describe()
    'sql table w'

Incremental reading:

* files (``incremental=True``): a file is read once; a file is new when its path, size or
  modification time (and then content hash) differ from every file read before;
* SQL (``cursor="updated_at"``): rows with ``cursor > the high-water mark`` and ``<=`` the
  maximum seen when the read started; the new high-water mark is committed atomically with the
  rows it covers. The cursor must only grow for new or changed rows.

"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Self

from headrace.errors import ConfigError, MissingConfigError

__all__ = [
    "FILE_FORMATS",
    "CsvOptions",
    "FileSource",
    "SourceSpec",
    "SqlSource",
    "files",
    "source_from_mapping",
    "sql",
]

FILE_FORMATS: Mapping[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".arrow": "ipc",
    ".ipc": "ipc",
    ".feather": "ipc",
}
"""File suffix -> format (a ``.gz`` or ``.zst`` suffix after it means compressed)."""

COMPRESSIONS = (".gz", ".zst", ".zstd")


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV/TSV file is laid out."""

    delimiter: str = ","
    quote_char: str | None = '"'
    has_header: bool = True
    encoding: str = "utf-8"
    null_values: Sequence[str] = ("", "NA")
    skip_rows: int = 0
    """Lines to skip before the header (or the first record without a header)."""
    column_names: Sequence[str] | None = None
    """Names of the columns when the file has no header (default: column_1, column_2...)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "null_values", tuple(self.null_values))
        if self.column_names is not None:
            object.__setattr__(self, "column_names", tuple(self.column_names))
        if len(self.delimiter) != 1:
            msg = f"CSV delimiter {self.delimiter!r} must be one character"
            raise ConfigError(msg)
        if self.quote_char is not None and len(self.quote_char) != 1:
            msg = f"CSV quote_char {self.quote_char!r} must be one character (or None)"
            raise ConfigError(msg)
        if self.skip_rows < 0:
            msg = f"CSV skip_rows={self.skip_rows} must be >= 0"
            raise ConfigError(msg)
        try:
            "".encode(self.encoding)
        except LookupError:
            msg = f"unknown CSV encoding {self.encoding!r}: use e.g. 'utf-8' or 'latin-1'"
            raise ConfigError(msg) from None


_CONFIG_REF = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RESOLVED = ("path", "dsn", "table")


class SourceSpec(ABC):
    """Base of every source spec (files and SQL today; streams later)."""

    kind: ClassVar[str]

    def config_keys(self) -> list[str]:
        """The pipeline config keys the spec names as ``{key}``."""
        keys: list[str] = []
        for name in _RESOLVED:
            value = getattr(self, name, None)
            if isinstance(value, str):
                keys.extend(_CONFIG_REF.findall(value))
        return list(dict.fromkeys(keys))

    def resolved(self, config: Mapping[str, Any], *, node: str = "") -> Self:
        """A copy with ``{key}`` references replaced by config values."""
        changes: dict[str, str] = {}
        for name in _RESOLVED:
            value = getattr(self, name, None)
            if not isinstance(value, str) or not _CONFIG_REF.search(value):
                continue

            def fill(match: re.Match[str]) -> str:
                key = match.group(1)
                if key not in config:
                    msg = (
                        f"the source of node {node!r} names config value {{{key}}}, which is "
                        f"not set: add {key} = ... under [config] in headrace.toml"
                    )
                    raise MissingConfigError(msg)
                return str(config[key])

            changes[name] = _CONFIG_REF.sub(fill, value)
        return replace(self, **changes) if changes else self  # type: ignore[type-var]

    @property
    @abstractmethod
    def incremental(self) -> bool:
        """True when a run reads only what is new since the last committed read."""

    @abstractmethod
    def describe(self) -> str:
        """One line for listings (no credentials)."""


@dataclass(frozen=True)
class FileSource(SourceSpec):
    """Files: one path, a directory (every file in it) or a glob; local or a URL."""

    kind: ClassVar[str] = "files"
    path: str
    format: str | None = None
    """csv, tsv, parquet, json, ndjson or ipc; default: from each file's suffix."""
    csv: CsvOptions = field(default_factory=CsvOptions)
    new_files_only: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            msg = "a file source needs a path (a file, a directory or a glob)"
            raise ConfigError(msg)
        if self.format is not None and self.format not in set(FILE_FORMATS.values()):
            known = ", ".join(sorted(set(FILE_FORMATS.values())))
            msg = f"unknown file format {self.format!r} for {self.path!r}; known: {known}"
            raise ConfigError(msg)

    @property
    def incremental(self) -> bool:
        """Whether only new files are read."""
        return self.new_files_only

    def describe(self) -> str:
        """``files <path>``."""
        return f"files {self.path}" + (" (new files only)" if self.new_files_only else "")

    def format_of(self, path: str) -> str:
        """The format of one file: the declared one, else from its suffix."""
        if self.format is not None:
            return self.format
        name = path.lower()
        for compression in COMPRESSIONS:
            name = name.removesuffix(compression)
        suffix = name[name.rfind(".") :] if "." in name else ""
        found = FILE_FORMATS.get(suffix)
        if found is None:
            msg = (
                f"cannot tell the format of {path!r} from its suffix: name it "
                f"format=... (one of {', '.join(sorted(set(FILE_FORMATS.values())))})"
            )
            raise ConfigError(msg)
        return found


@dataclass(frozen=True)
class SqlSource(SourceSpec):
    """A table or a query of a PostgreSQL, MySQL/MariaDB or SQLite database."""

    kind: ClassVar[str] = "sql"
    dsn: str
    """A URL such as ``postgresql://user@host/db``; ``${VAR}`` parts come from the environment."""
    table: str | None = None
    query: str | None = None
    cursor: str | None = None
    """Incremental column (e.g. ``updated_at`` or an increasing id)."""
    partition_on: str | None = None
    """A numeric column to split a big read into ``partitions`` parallel range reads."""
    partitions: int = 1
    chunk_rows: int = 500_000
    """Rows per chunk: a bound on what one read holds in memory before it is stored."""
    retries: int = 3
    retry_delay: float = 1.0
    """Seconds before the first retry of a failed read (doubling after each)."""

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            msg = f"sql source on {self.describe_dsn()}: give exactly one of table= or query="
            raise ConfigError(msg)
        if self.partitions < 1 or self.chunk_rows < 1 or self.retries < 0:
            msg = "sql source: partitions and chunk_rows must be >= 1, retries >= 0"
            raise ConfigError(msg)
        if self.partitions > 1 and self.partition_on is None:
            msg = "sql source: partitions > 1 needs partition_on=<a numeric column>"
            raise ConfigError(msg)

    @property
    def incremental(self) -> bool:
        """Whether a cursor column makes reads incremental."""
        return self.cursor is not None

    def describe_dsn(self) -> str:
        """The DSN with its password masked."""
        from headrace.core.redaction import redact

        return redact(self.dsn)

    def describe(self) -> str:
        """``sql table <t>`` or ``sql query``."""
        what = f"table {self.table}" if self.table else "query"
        return f"sql {what}" + (f" (incremental on {self.cursor})" if self.cursor else "")


def files(
    path: str,
    *,
    format: str | None = None,
    incremental: bool = False,
    **csv: Any,
) -> FileSource:
    """A :class:`FileSource`; CSV layout options (``delimiter=``, ...) go to :class:`CsvOptions`."""
    return FileSource(path, format=format, csv=CsvOptions(**csv), new_files_only=incremental)


def sql(
    dsn: str,
    *,
    table: str | None = None,
    query: str | None = None,
    cursor: str | None = None,
    **options: Any,
) -> SqlSource:
    """A :class:`SqlSource` reading ``table`` or ``query`` from ``dsn``."""
    return SqlSource(dsn, table=table, query=query, cursor=cursor, **options)


def source_from_mapping(name: str, values: Mapping[str, Any]) -> SourceSpec:
    """A spec from a ``[sources.NAME]`` table of ``headrace.toml``."""
    values = dict(values)
    kind = values.pop("type", None)
    values.pop("contract", None)
    values.pop("pipeline", None)
    values.pop("description", None)
    values.pop("gate", None)
    try:
        if kind == "files":
            csv_keys = {f.name for f in fields(CsvOptions)}
            csv = {k: values.pop(k) for k in list(values) if k in csv_keys}
            return files(**values, **csv)
        if kind == "sql":
            return sql(**values)
    except TypeError as exc:
        msg = f"source {name!r} in headrace.toml: {exc}; see docs/ingestion.md for its keys"
        raise ConfigError(msg) from None
    msg = f'source {name!r} in headrace.toml has type {kind!r}: use type = "files" or "sql"'
    raise ConfigError(msg)
