"""Per-column statistics for drift detection: computed once, stored, merged, compared.

A *sketch* summarises one column of a dataset version in a few kilobytes, so that a reference
version's statistics are computed once (when it is written) and every later comparison only
has to read the current data.

- :class:`NumericSketch` (integers, floats, decimals): exact count, mean, sum of squared
  deviations, min and max, and a histogram over fixed *edges*: the reference's quantiles
  (``bins`` of them, ties merged), with an open bin below the first edge and one at or above the
  last. Each bin keeps its count and the sum of its values, which is what makes the Wasserstein
  distance exact wherever the two distributions do not cross inside a bin (see
  :mod:`~headrace.quality.drift.measures`). Up to ``exact_values`` values the sketch also keeps
  the sorted values themselves, and comparisons are then exactly SciPy's.
- :class:`CategoricalSketch` (strings, categoricals, enums, booleans): the count of each value,
  the ``max_categories`` most frequent ones kept and the rest summed into ``other``.

Missing values (null, NaN, infinities) are counted in ``missing`` and left out of the rest.

Sketches of the same column merge into the sketch of the union (:func:`merge_sketches`) when
they share their edges: sketch the first partition, then the others ``like=`` it. The merge is
exact for counts, min and max; mean, variance and bin sums agree to floating-point rounding;
categories are exact while the union has at most ``max_categories`` distinct values (beyond
that the least frequent go to ``other``). :func:`dump_sketches` and :func:`load_sketches`
turn sketches into bytes and back; ``to_dict`` / ``from_dict`` give a JSON-able form.

Example:
    >>> import polars as pl
    >>> from headrace.quality.drift import sketch_frame
    >>> frame = pl.DataFrame({"x": [1.0, 2.0, 2.0, 5.0], "k": ["a", "b", "a", None]})
    >>> sketches = sketch_frame(frame)
    >>> sketches["x"].count, sketches["x"].mean, sketches["k"].counts, sketches["k"].missing
    (4, 2.5, {'a': 2, 'b': 1}, 1)

"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt

from headrace.errors import DriftError

__all__ = [
    "BINS",
    "EXACT_VALUES",
    "MAX_CATEGORIES",
    "CategoricalSketch",
    "ColumnSketch",
    "DriftError",
    "NumericSketch",
    "aligned_counts",
    "dump_sketches",
    "load_sketches",
    "merge_sketches",
]

BINS = 512
"""Quantile bins of a numeric reference (fewer when values repeat; the two outer bins are
split again in halves down to single values, about 2 log2(rows / 512) more edges)."""
MAX_CATEGORIES = 1000
"""Most frequent values a categorical sketch keeps; the rest go to ``other``."""
EXACT_VALUES = 10_000
"""Up to this many values a numeric sketch keeps them all (SciPy's exact-KS limit too)."""
_FORMAT = 1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class NumericSketch:
    """Statistics of a numeric column: moments, range, a quantile-binned histogram.

    ``counts[k]`` and ``sums[k]`` describe bin ``k``: values below ``edges[0]`` for ``k = 0``,
    ``edges[k-1] <= v < edges[k]`` in between, ``v >= edges[-1]`` for ``k = len(edges)``.
    """

    kind: ClassVar[str] = "numeric"
    name: str
    dtype: str
    count: int
    missing: int
    mean: float
    m2: float
    min: float
    max: float
    edges: FloatArray
    counts: IntArray
    sums: FloatArray
    values: FloatArray | None
    exact_limit: int = EXACT_VALUES

    @property
    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``numpy.std``)."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    def merge(self, other: NumericSketch) -> NumericSketch:
        """The sketch of both columns' values together (the edges must be the same)."""
        if not np.array_equal(self.edges, other.edges):
            msg = (
                f"cannot merge sketches of column {self.name!r}: their bin edges differ; sketch "
                "every partition like=the first partition's sketches"
            )
            raise DriftError(msg)
        count = self.count + other.count
        if not other.count or not self.count:
            mean, m2 = (self.mean, self.m2) if self.count else (other.mean, other.m2)
        else:
            delta = other.mean - self.mean
            mean = self.mean + delta * other.count / count
            m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        limit = min(self.exact_limit, other.exact_limit)
        values = None
        if self.values is not None and other.values is not None and count <= limit:
            values = frozen(np.sort(np.concatenate([self.values, other.values])))
        return NumericSketch(
            name=self.name,
            dtype=self.dtype,
            count=count,
            missing=self.missing + other.missing,
            mean=mean,
            m2=m2,
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            edges=self.edges,
            counts=frozen(self.counts + other.counts),
            sums=frozen(self.sums + other.sums),
            values=values,
            exact_limit=limit,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (floats exact; arrays of values as base64 little-endian float64)."""
        return {
            "format": _FORMAT,
            "kind": self.kind,
            "name": self.name,
            "dtype": self.dtype,
            "count": self.count,
            "missing": self.missing,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "edges": _pack(self.edges),
            "counts": self.counts.tolist(),
            "sums": _pack(self.sums),
            "values": None if self.values is None else _pack(self.values),
            "exact_limit": self.exact_limit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericSketch:
        """The sketch back from :meth:`to_dict`."""
        values = data["values"]
        return cls(
            name=data["name"],
            dtype=data["dtype"],
            count=int(data["count"]),
            missing=int(data["missing"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
            min=math.inf if data["min"] is None else float(data["min"]),
            max=-math.inf if data["max"] is None else float(data["max"]),
            edges=_unpack(data["edges"]),
            counts=frozen(np.asarray(data["counts"], dtype=np.int64)),
            sums=_unpack(data["sums"]),
            values=None if values is None else _unpack(values),
            exact_limit=int(data["exact_limit"]),
        )


@dataclass(frozen=True, eq=False)
class CategoricalSketch:
    """Value counts of a categorical column: the most frequent values and an ``other`` count.

    ``counts`` is ordered by count (descending), then value. A sketch made ``like=`` a
    reference lists every value the reference lists (with 0 when absent) and the new values
    after them.
    """

    kind: ClassVar[str] = "categorical"
    name: str
    dtype: str
    count: int
    missing: int
    counts: dict[str, int]
    other: int
    max_categories: int = MAX_CATEGORIES

    def merge(self, other: CategoricalSketch) -> CategoricalSketch:
        """The sketch of both columns' values together."""
        counts = dict(self.counts)
        for key, n in other.counts.items():
            counts[key] = counts.get(key, 0) + n
        limit = min(self.max_categories, other.max_categories)
        kept, rest = _top(counts, limit)
        return CategoricalSketch(
            name=self.name,
            dtype=self.dtype,
            count=self.count + other.count,
            missing=self.missing + other.missing,
            counts=kept,
            other=self.other + other.other + rest,
            max_categories=limit,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; counts as ``[value, count]`` pairs in order."""
        return {
            "format": _FORMAT,
            "kind": self.kind,
            "name": self.name,
            "dtype": self.dtype,
            "count": self.count,
            "missing": self.missing,
            "counts": [[key, n] for key, n in self.counts.items()],
            "other": self.other,
            "max_categories": self.max_categories,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalSketch:
        """The sketch back from :meth:`to_dict`."""
        return cls(
            name=data["name"],
            dtype=data["dtype"],
            count=int(data["count"]),
            missing=int(data["missing"]),
            counts={str(key): int(n) for key, n in data["counts"]},
            other=int(data["other"]),
            max_categories=int(data["max_categories"]),
        )


ColumnSketch: TypeAlias = NumericSketch | CategoricalSketch
"""The sketch of one column."""


def _pack(array: FloatArray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode("ascii")


def _unpack(text: str) -> FloatArray:
    raw = np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)
    return frozen(raw)


def _top(counts: Mapping[str, int], limit: int) -> tuple[dict[str, int], int]:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dict(ordered[:limit]), sum(n for _, n in ordered[limit:])


OTHER = "(other)"
"""The label of the bucket of values a categorical sketch does not list."""


def aligned_counts(
    reference: CategoricalSketch, current: CategoricalSketch
) -> tuple[list[str], IntArray, IntArray]:
    """The two sketches' counts over the same categories, ``(other)`` last when non-empty.

    A value listed by one sketch only is compared as it is when the other sketch lists
    every value it saw (the value is absent there); when the other sketch summed some
    values into ``other``, this one moves the value into ``other`` too, since its count on
    the other side is unknown.
    """
    ref_other, cur_other = reference.other, current.other
    keys: list[str] = []
    ref_counts: list[int] = []
    cur_counts: list[int] = []
    for key in [*reference.counts, *(k for k in current.counts if k not in reference.counts)]:
        ref_n = reference.counts.get(key)
        cur_n = current.counts.get(key)
        if ref_n is None and ref_other:
            cur_other += cur_n or 0
        elif cur_n is None and cur_other:
            ref_other += ref_n or 0
        else:
            keys.append(key)
            ref_counts.append(ref_n or 0)
            cur_counts.append(cur_n or 0)
    if ref_other or cur_other:
        keys.append(OTHER)
        ref_counts.append(ref_other)
        cur_counts.append(cur_other)
    return keys, np.asarray(ref_counts, np.int64), np.asarray(cur_counts, np.int64)


def merge_sketches(*sketch_maps: Mapping[str, ColumnSketch]) -> dict[str, ColumnSketch]:
    """Merge per-column sketches of partitions into the sketches of all the data.

    Every map must hold the same columns (sketch partitions ``like=`` the first one).
    """
    if not sketch_maps:
        return {}
    first = sketch_maps[0]
    for other in sketch_maps[1:]:
        if list(other) != list(first):
            msg = f"cannot merge sketches of different columns: {sorted(first)} vs {sorted(other)}"
            raise DriftError(msg)
    merged: dict[str, ColumnSketch] = {}
    for name in first:
        sketch = first[name]
        for other in sketch_maps[1:]:
            sketch = _merge_one(sketch, other[name])
        merged[name] = sketch
    return merged


def _merge_one(left: ColumnSketch, right: ColumnSketch) -> ColumnSketch:
    if isinstance(left, NumericSketch) and isinstance(right, NumericSketch):
        return left.merge(right)
    if isinstance(left, CategoricalSketch) and isinstance(right, CategoricalSketch):
        return left.merge(right)
    msg = f"cannot merge a {left.kind} and a {right.kind} sketch of {left.name!r}"
    raise DriftError(msg)


def dump_sketches(sketches: Mapping[str, ColumnSketch]) -> bytes:
    """Sketches as compressed JSON bytes (to store beside a dataset version)."""
    payload = {"format": _FORMAT, "columns": [sketch.to_dict() for sketch in sketches.values()]}
    return zlib.compress(json.dumps(payload, separators=(",", ":")).encode("utf-8"), 6)


def load_sketches(data: bytes) -> dict[str, ColumnSketch]:
    """Sketches back from :func:`dump_sketches`."""
    try:
        payload = json.loads(zlib.decompress(data))
    except (zlib.error, ValueError) as exc:
        msg = "stored drift sketches are corrupt (not zlib-compressed JSON)"
        raise DriftError(msg) from exc
    if payload.get("format") != _FORMAT:
        msg = f"stored drift sketches have format {payload.get('format')!r}"
        raise DriftError(msg)
    sketches: dict[str, ColumnSketch] = {}
    for item in payload["columns"]:
        sketch: ColumnSketch = (
            NumericSketch.from_dict(item)
            if item["kind"] == "numeric"
            else CategoricalSketch.from_dict(item)
        )
        sketches[sketch.name] = sketch
    return sketches
