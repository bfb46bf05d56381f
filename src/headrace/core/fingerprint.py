"""Fingerprints of data and settings, used for cache keys and change detection."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

__all__ = ["content_hash", "key_hash", "schema_of"]


def schema_of(frame: pl.DataFrame | pl.LazyFrame) -> dict[str, str]:
    """Column name -> Polars dtype text.

    >>> schema_of(pl.DataFrame({"a": [1]}))
    {'a': 'Int64'}
    """
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    return {name: str(dtype) for name, dtype in schema.items()}


def content_hash(frame: pl.DataFrame) -> str:
    """A hash of a frame's schema and its rows as a multiset: row order does not matter.

    A dataset is a set of rows (Delta Lake keeps no order, and Polars joins and group-bys
    need not keep one), so two frames with the same rows in another order hash alike.
    Uses Polars' row hashing with a fixed seed: stable for one Polars version, which is what
    caching needs; after a Polars upgrade nodes may re-run once.

    >>> content_hash(pl.DataFrame({"a": [1, 2]})) == content_hash(pl.DataFrame({"a": [2, 1]}))
    True
    >>> content_hash(pl.DataFrame({"a": [1, 2]})) == content_hash(pl.DataFrame({"a": [1, 3]}))
    False
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(sorted(schema_of(frame).items())).encode())
    digest.update(frame.height.to_bytes(8, "little"))
    if frame.height and frame.width:
        digest.update(frame.hash_rows(seed=0).sort().to_numpy().tobytes())
    return digest.hexdigest()


def key_hash(*parts: str | Mapping[str, Any] | Iterable[str] | None) -> str:
    """A short stable hash of strings, sequences of strings and JSON-able mappings.

    >>> key_hash("a", {"x": 1}) == key_hash("a", {"x": 1})
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if part is None:
            text = "null"
        elif isinstance(part, str):
            text = part
        elif isinstance(part, Mapping):
            text = json.dumps(part, sort_keys=True, default=repr)
        else:
            text = json.dumps(list(part))
        digest.update(text.encode())
        digest.update(b"\x00")
    return digest.hexdigest()
