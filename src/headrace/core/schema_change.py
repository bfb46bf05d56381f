"""Schema evolution: classify each change between two schema versions.

A schema here is a mapping column -> (type name, nullable). Contracts give both; a dataset
version's recorded schema gives types only (then everything counts as nullable).

* compatible: an added nullable column, a widened type (Int32 -> Int64, Float32 -> Float64,
  an integer -> Float64), required -> nullable;
* breaking: a dropped (or renamed: dropped + added) column, an added required column, a
  narrowed or otherwise changed type, nullable -> required.

>>> changes = classify({"a": ("Int32", True)}, {"a": ("Int64", False), "b": ("String", True)})
>>> [(c.column, c.kind, c.breaking) for c in changes]
[('a', 'type widened', False), ('a', 'now required', True), ('b', 'added', False)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from headrace.core.contract import Contract

__all__ = ["SchemaChange", "classify", "contract_schema", "dataset_schema"]

Schema = Mapping[str, tuple[str | None, bool]]

_WIDER: Mapping[str, frozenset[str]] = {
    "Int8": frozenset({"Int16", "Int32", "Int64", "Float32", "Float64"}),
    "Int16": frozenset({"Int32", "Int64", "Float32", "Float64"}),
    "Int32": frozenset({"Int64", "Float64"}),
    "Int64": frozenset({"Float64"}),
    "UInt8": frozenset({"UInt16", "UInt32", "UInt64", "Int16", "Int32", "Int64", "Float64"}),
    "UInt16": frozenset({"UInt32", "UInt64", "Int32", "Int64", "Float64"}),
    "UInt32": frozenset({"UInt64", "Int64", "Float64"}),
    "Float32": frozenset({"Float64"}),
    "Date": frozenset({"Datetime", "Datetime[UTC]"}),
}


@dataclass(frozen=True)
class SchemaChange:
    """One difference between two schema versions."""

    column: str
    kind: str
    detail: str
    breaking: bool

    def __str__(self) -> str:
        verdict = "breaking" if self.breaking else "compatible"
        return f"{self.column}: {self.kind} ({self.detail}) — {verdict}"


def contract_schema(contract: Contract) -> dict[str, tuple[str | None, bool]]:
    """A contract's fields as column -> (type name, nullable)."""
    return {f.name: (f.dtype, f.nullable) for f in contract.fields}


def dataset_schema(schema: Mapping[str, str]) -> dict[str, tuple[str | None, bool]]:
    """A recorded dataset schema (column -> Polars dtype text) as column -> (type, nullable).

    Datasets record no nullability, so every column counts as nullable; zoned and naive
    timestamps get the contract names ``Datetime[UTC]`` and ``Datetime``.

    >>> dataset_schema({"at": "Datetime(time_unit='us', time_zone='UTC')", "n": "Int64"})
    {'at': ('Datetime[UTC]', True), 'n': ('Int64', True)}
    """
    out: dict[str, tuple[str | None, bool]] = {}
    for column, text in schema.items():
        name = text
        if text.startswith("Datetime("):
            name = "Datetime" if "time_zone=None" in text else "Datetime[UTC]"
        out[column] = (name, True)
    return out


def classify(old: Schema, new: Schema) -> list[SchemaChange]:
    """Every change from ``old`` to ``new``, in column order (old columns first)."""
    changes: list[SchemaChange] = []
    for column, (old_type, old_nullable) in old.items():
        if column not in new:
            changes.append(SchemaChange(column, "dropped", f"was {old_type or 'any'}", True))
            continue
        new_type, new_nullable = new[column]
        if old_type != new_type and old_type is not None:
            if new_type is None:
                changes.append(SchemaChange(column, "type relaxed", f"{old_type} -> any", False))
            elif new_type in _WIDER.get(old_type, frozenset()):
                changes.append(
                    SchemaChange(column, "type widened", f"{old_type} -> {new_type}", False)
                )
            else:
                changes.append(
                    SchemaChange(column, "type changed", f"{old_type} -> {new_type}", True)
                )
        elif old_type is None and new_type is not None:
            changes.append(SchemaChange(column, "type fixed", f"any -> {new_type}", True))
        if old_nullable and not new_nullable:
            changes.append(SchemaChange(column, "now required", "nulls no longer allowed", True))
        elif not old_nullable and new_nullable:
            changes.append(SchemaChange(column, "now nullable", "nulls allowed", False))
    for column, (new_type, new_nullable) in new.items():
        if column not in old:
            required = not new_nullable
            detail = f"{new_type or 'any'}, {'required' if required else 'nullable'}"
            changes.append(SchemaChange(column, "added", detail, required))
    return changes
