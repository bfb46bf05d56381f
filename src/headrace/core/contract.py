"""Data contracts: what a dataset promises, as plain declarative data.

A :class:`Contract` lists :class:`Field` s (name, type, nullability, description, owner, PII
tag, column checks) and dataset-wide checks. It says nothing about how the checks run: the
Polars backend (:mod:`headrace.quality.validation`) compiles a contract into one pass over a
frame, and a streaming backend can run the same contract on micro-batches.

Example:
    >>> import headrace as hr
    >>> orders = hr.Contract(
    ...     "orders",
    ...     fields=[
    ...         hr.Field("order_id", "Int64", nullable=False, unique=True),
    ...         hr.Field("amount", "Float64", checks=[hr.checks.between(0, 10_000)]),
    ...         hr.Field("status", "String", checks=[hr.checks.isin(["new", "paid"])]),
    ...     ],
    ...     checks=[hr.checks.row_count(min=1)],
    ... )
    >>> [check.rule for check in orders.row_checks()]
    ['order_id.not_null', 'order_id.unique', 'amount.between', 'status.isin']

Semantics every backend must keep:

* a row check passes on null values unless its ``nulls`` policy is ``"fail"`` (``not_null``
  is the check that fails nulls);
* rows failing an ``error`` row check are quarantined; ``warn`` checks only report;
* a check with ``mostly=f`` passes when at least a share ``f`` of the rows pass it;
* ``unique`` flags every row whose key occurs more than once (nulls in the key are ignored);
* ``references`` passes values found in a column of another dataset (a foreign key).

"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import polars as pl

from headrace.errors import ContractError

__all__ = ["Check", "Contract", "Field", "Level", "Severity"]


class Severity(enum.StrEnum):
    """How much a failed check matters."""

    ERROR = "error"
    """Failing rows are quarantined; a failed dataset check fails the gate."""
    WARN = "warn"
    """Reported (and lowers the score) but quarantines nothing and never fails the gate."""


class Level(enum.StrEnum):
    """Whether a check judges each row or the dataset as a whole."""

    ROW = "row"
    DATASET = "dataset"


ROW_KINDS = (
    "not_null", "type", "between", "isin", "matches", "length", "unique", "expression",
    "references",
)  # fmt: skip
DATASET_KINDS = ("row_count", "freshness", "distribution", "aggregate")
DISTRIBUTION_STATS = ("mean", "std", "min", "max", "median", "null_share", "quantile")


@dataclass(frozen=True)
class Check:
    """One rule. Build checks with the functions in :mod:`headrace.checks`."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    """The column(s) the check reads; set from its field when declared under one."""
    severity: Severity = Severity.ERROR
    mostly: float = 1.0
    nulls: str = "pass"
    """Row checks: do null values ``pass`` or ``fail``?"""
    name: str | None = None
    """Rule id; default ``<column>.<kind>`` (or the kind for dataset checks)."""

    def __post_init__(self) -> None:
        if self.kind not in ROW_KINDS + DATASET_KINDS:
            msg = f"unknown check kind {self.kind!r}; known: {', '.join(ROW_KINDS + DATASET_KINDS)}"
            raise ContractError(msg)
        if not 0.0 <= self.mostly <= 1.0:
            msg = f"check {self.rule!r}: mostly={self.mostly} must be between 0 and 1"
            raise ContractError(msg)
        if self.nulls not in ("pass", "fail"):
            msg = f"check {self.rule!r}: nulls={self.nulls!r} must be 'pass' or 'fail'"
            raise ContractError(msg)
        object.__setattr__(self, "severity", Severity(self.severity))
        _validate_params(f"check {self.rule!r}", self)

    @property
    def level(self) -> Level:
        """Row or dataset."""
        return Level.ROW if self.kind in ROW_KINDS else Level.DATASET

    @property
    def rule(self) -> str:
        """The rule id shown in results and quarantine rows."""
        if self.name:
            return self.name
        if self.columns:
            return f"{'+'.join(self.columns)}.{self.kind}"
        return self.kind

    @property
    def column(self) -> str | None:
        """The single column a check reads, if it reads exactly one."""
        return self.columns[0] if len(self.columns) == 1 else None

    def on(self, *columns: str) -> Check:
        """The same check bound to ``columns``."""
        return replace(self, columns=tuple(columns))

    def describe(self) -> str:
        """A short human text, e.g. ``amount between 0 and 10000``."""
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if k != "expr")
        target = "+".join(self.columns) if self.columns else "dataset"
        return f"{target} {self.kind}" + (f" ({params})" if params else "")


@dataclass(frozen=True)
class Field:
    """One column the contract promises."""

    name: str
    dtype: str | None = None
    """A Polars type name (``Int64``, ``String``, ``Datetime``...); None: any type."""
    nullable: bool = True
    unique: bool = False
    checks: Sequence[Check] = ()
    description: str = ""
    owner: str = ""
    pii: str | None = None
    """A PII tag (``email``, ``name``, ...) for governance; not enforced here."""
    coerce: bool = False
    """Cast values to ``dtype``; values that do not convert fail the ``type`` check."""

    def __post_init__(self) -> None:
        if self.dtype is not None:
            _parse_dtype(self.dtype, where=f"field {self.name!r}")
        object.__setattr__(self, "checks", tuple(self.checks))

    @property
    def polars_dtype(self) -> pl.DataType | None:
        """The declared type as a Polars type."""
        return None if self.dtype is None else _parse_dtype(self.dtype, where=self.name)


@dataclass(frozen=True)
class Contract:
    """The promises of one dataset: fields and dataset-level checks."""

    name: str
    fields: Sequence[Field] = ()
    checks: Sequence[Check] = ()
    description: str = ""
    owner: str = ""
    version: str = "1"
    allow_extra_columns: bool = True
    primary_key: Sequence[str] = ()
    """Key column(s): each must be non-null and the key unique (rule ``primary_key``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "primary_key", tuple(self.primary_key))
        names = [f.name for f in self.fields]
        unknown = [c for c in self.primary_key if c not in names]
        if unknown:
            msg = (
                f"contract {self.name!r}: primary key column(s) {unknown} are not fields; "
                "declare them under fields"
            )
            raise ContractError(msg)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            msg = f"contract {self.name!r} declares field(s) {duplicated} twice"
            raise ContractError(msg)
        rules = [c.rule for c in self.all_checks()]
        repeated = sorted({r for r in rules if rules.count(r) > 1})
        if repeated:
            msg = f"contract {self.name!r} has two checks with rule id(s) {repeated}: name them"
            raise ContractError(msg)
        for check in self.all_checks():
            if check.level is Level.ROW and check.kind != "expression" and not check.columns:
                msg = (
                    f"contract {self.name!r} check {check.rule!r}: a {check.kind} check needs "
                    "a column; declare it under a Field or use .on(column)"
                )
                raise ContractError(msg)

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        msg = f"contract {self.name!r} has no field {name!r}"
        raise ContractError(msg)

    def coercing(self) -> Contract:
        """A copy with every typed field coerced (for sources that deliver text, like CSV)."""
        return replace(
            self,
            fields=tuple(
                replace(f, coerce=True) if f.dtype is not None and not f.coerce else f
                for f in self.fields
            ),
        )

    def row_checks(self) -> list[Check]:
        """Every row-level check, the implicit ones (not-null, unique, type) first per field."""
        return [c for c in self.all_checks() if c.level is Level.ROW]

    def dataset_checks(self) -> list[Check]:
        """Every dataset-level check."""
        return [c for c in self.all_checks() if c.level is Level.DATASET]

    def all_checks(self) -> list[Check]:
        """Field checks (implicit ones included) then contract-wide checks."""
        out: list[Check] = []
        for f in self.fields:
            if not f.nullable or f.name in self.primary_key:
                out.append(Check("not_null", columns=(f.name,), nulls="fail"))
            if f.coerce and f.dtype is not None:
                out.append(Check("type", {"dtype": f.dtype}, columns=(f.name,)))
            if f.unique:
                out.append(Check("unique", columns=(f.name,)))
            out.extend(c if c.columns else c.on(f.name) for c in f.checks)
        if self.primary_key:
            out.append(Check("unique", columns=tuple(self.primary_key), name="primary_key"))
        out.extend(self.checks)
        return out


def _parse_dtype(text: str, *, where: str) -> pl.DataType:
    names = {
        "Boolean": pl.Boolean(), "Int8": pl.Int8(), "Int16": pl.Int16(), "Int32": pl.Int32(),
        "Int64": pl.Int64(), "UInt8": pl.UInt8(), "UInt16": pl.UInt16(), "UInt32": pl.UInt32(),
        "UInt64": pl.UInt64(), "Float32": pl.Float32(), "Float64": pl.Float64(),
        "String": pl.String(), "Utf8": pl.String(), "Date": pl.Date(), "Time": pl.Time(),
        "Datetime": pl.Datetime("us"), "Datetime[UTC]": pl.Datetime("us", "UTC"),
        "Duration": pl.Duration("us"), "Categorical": pl.Categorical(),
        "Decimal": pl.Decimal(38, 9),
    }  # fmt: skip
    if text in names:
        return names[text]
    msg = f"{where}: unknown type {text!r}; use one of {', '.join(names)}"
    raise ContractError(msg)


def _validate_params(where: str, check: Check) -> None:
    p = check.params
    if check.kind == "between" and p.get("min") is None and p.get("max") is None:
        msg = f"{where}: give min, max or both"
        raise ContractError(msg)
    if check.kind == "matches":
        try:
            re.compile(p["pattern"])
            pl.select(pl.lit("").str.contains(p["pattern"]))
        except (re.error, pl.exceptions.ComputeError) as exc:
            reason = str(exc).splitlines()[0]
            msg = f"{where}: invalid regular expression {p['pattern']!r}: {reason}"
            raise ContractError(msg) from None
    if check.kind in ("expression", "aggregate") and not isinstance(p.get("expr"), pl.Expr):
        msg = f"{where}: expr must be a Polars expression (or SQL text)"
        raise ContractError(msg)
    if check.kind == "distribution" and p.get("stat") not in DISTRIBUTION_STATS:
        msg = f"{where}: stat must be one of {', '.join(DISTRIBUTION_STATS)}"
        raise ContractError(msg)
    if check.kind == "freshness" and not isinstance(p.get("max_age"), timedelta):
        msg = f"{where}: max_age must be a timedelta"
        raise ContractError(msg)
    if check.kind == "references" and not isinstance(p.get("dataset"), str):
        msg = f"{where}: references needs the name of the dataset that holds the keys"
        raise ContractError(msg)
    if check.kind == "isin" and not isinstance(p.get("values"), Iterable):
        msg = f"{where}: values must be a list"
        raise ContractError(msg)
