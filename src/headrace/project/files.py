"""Reading a data file named on the command line, by its suffix."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import polars as pl

from headrace.errors import ConfigError

__all__ = ["scan_file"]

_READERS: dict[str, Callable[[Path], pl.LazyFrame]] = {
    ".csv": partial(pl.scan_csv, infer_schema_length=10_000),
    ".tsv": partial(pl.scan_csv, separator="\t", infer_schema_length=10_000),
    ".parquet": pl.scan_parquet,
    ".ndjson": pl.scan_ndjson,
    ".jsonl": pl.scan_ndjson,
    ".arrow": pl.scan_ipc,
    ".ipc": pl.scan_ipc,
    ".feather": pl.scan_ipc,
}


def scan_file(path: Path) -> pl.LazyFrame:
    """A lazy scan of a CSV/TSV, Parquet, NDJSON or Arrow IPC file."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        msg = f"cannot read {path}: use a file ending in {', '.join(_READERS)}"
        raise ConfigError(msg)
    if not path.exists():
        msg = f"no file {path}"
        raise ConfigError(msg)
    return reader(path)
