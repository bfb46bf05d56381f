"""Contracts as YAML: the same spec, written by hand or suggested by profiling.

::

    name: orders
    owner: data-eng
    fields:
      - name: order_id
        type: Int64
        nullable: false
        unique: true
      - name: amount
        type: Float64
        checks:
          - between: {min: 0, max: 10000}
          - between: {min: 0, max: 500}
            severity: warn
            mostly: 0.99
      - name: status
        checks:
          - isin: [new, paid, shipped]
    checks:
      - row_count: {min: 1}
      - expression: {name: amount_covers_qty, expr: "amount >= quantity * 0.01"}
      - freshness: {column: created_at, max_age: 1d}

Each check is a mapping with one kind key (its arguments: a mapping, or a single value for
``isin`` / ``matches``) and optional ``severity``, ``mostly``, ``nulls`` and ``name``.
``expression`` and ``aggregate`` take SQL text. Durations read ``30s``, ``15m``, ``2h``, ``7d``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import yaml

from headrace.core import checks as builders
from headrace.core.contract import Check, Contract, Field
from headrace.errors import ContractError

__all__ = ["contract_from_yaml", "contract_to_yaml"]

_OPTIONS = ("severity", "mostly", "nulls", "name")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def contract_from_yaml(text: str, *, source: str = "contract") -> Contract:
    """Parse a contract from YAML text; errors name ``source`` and the bad entry."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{source} is not valid YAML: {exc}"
        raise ContractError(msg) from None
    if not isinstance(data, Mapping) or "name" not in data:
        msg = f"{source} must be a mapping with at least a name (and fields, checks)"
        raise ContractError(msg)
    fields = [_field(source, entry) for entry in data.get("fields") or []]
    checks = [_check(source, entry, column=None) for entry in data.get("checks") or []]
    return Contract(
        str(data["name"]),
        fields=fields,
        checks=checks,
        description=str(data.get("description", "")),
        owner=str(data.get("owner", "")),
        version=str(data.get("version", "1")),
        allow_extra_columns=bool(data.get("allow_extra_columns", True)),
        primary_key=[str(c) for c in data.get("primary_key") or []],
    )


def _field(source: str, entry: Any) -> Field:
    if not isinstance(entry, Mapping) or "name" not in entry:
        msg = f"{source}: each field needs a name (got {entry!r})"
        raise ContractError(msg)
    name = str(entry["name"])
    known = {
        "name",
        "type",
        "nullable",
        "unique",
        "checks",
        "description",
        "owner",
        "pii",
        "coerce",
    }
    unknown = set(entry) - known
    if unknown:
        msg = (
            f"{source}: field {name!r} has unknown key(s) {sorted(unknown)}; known: {sorted(known)}"
        )
        raise ContractError(msg)
    return Field(
        name,
        entry.get("type"),
        nullable=bool(entry.get("nullable", True)),
        unique=bool(entry.get("unique", False)),
        checks=[_check(source, c, column=name) for c in entry.get("checks") or []],
        description=str(entry.get("description", "")),
        owner=str(entry.get("owner", "")),
        pii=entry.get("pii"),
        coerce=bool(entry.get("coerce", False)),
    )


def _check(source: str, entry: Any, *, column: str | None) -> Check:
    if not isinstance(entry, Mapping):
        msg = f"{source}: a check must be a mapping like {{between: {{min: 0}}}}, got {entry!r}"
        raise ContractError(msg)
    kinds = [key for key in entry if key not in _OPTIONS]
    if len(kinds) != 1:
        msg = f"{source}: a check needs exactly one kind, got {kinds or 'none'} in {dict(entry)!r}"
        raise ContractError(msg)
    kind = kinds[0]
    builder = getattr(builders, kind, None)
    if kind.startswith("_") or kind not in builders.__all__ or builder is None:
        msg = f"{source}: unknown check {kind!r}; known: {', '.join(builders.__all__)}"
        raise ContractError(msg)
    args = entry[kind]
    options = {key: entry[key] for key in _OPTIONS if key in entry}
    try:
        if args is None or args is True:
            check: Check = builder(**options)
        elif isinstance(args, Mapping):
            arguments = dict(args)
            if "max_age" in arguments:
                arguments["max_age"] = _duration(source, arguments["max_age"])
            if kind == "unique" and "columns" in arguments:
                check = builder(*arguments.pop("columns"), **arguments, **options)
            else:
                check = builder(**arguments, **options)
        else:
            check = builder(args, **options)
    except TypeError as exc:
        msg = f"{source}: check {kind!r} has bad arguments {args!r}: {exc}"
        raise ContractError(msg) from None
    return check if check.columns or column is None else check.on(column)


def _duration(source: str, value: Any) -> timedelta:
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        msg = f"{source}: duration {value!r} must read like 30s, 15m, 2h or 7d"
        raise ContractError(msg)
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def contract_to_yaml(contract: Contract) -> str:
    """Write a contract as YAML (the inverse of :func:`contract_from_yaml`)."""
    implicit = {"not_null", "unique", "type"}
    fields = []
    for field in contract.fields:
        entry: dict[str, Any] = {"name": field.name}
        if field.dtype:
            entry["type"] = field.dtype
        if not field.nullable:
            entry["nullable"] = False
        if field.unique:
            entry["unique"] = True
        for key in ("description", "owner", "pii"):
            if getattr(field, key):
                entry[key] = getattr(field, key)
        if field.coerce:
            entry["coerce"] = True
        own = [c for c in field.checks if not (c.kind in implicit and not c.params)]
        if own:
            entry["checks"] = [_check_entry(c, keep_columns=False) for c in own]
        fields.append(entry)
    data: dict[str, Any] = {"name": contract.name}
    for key in ("description", "owner"):
        if getattr(contract, key):
            data[key] = getattr(contract, key)
    data["fields"] = fields
    if contract.primary_key:
        data["primary_key"] = list(contract.primary_key)
    if contract.checks:
        data["checks"] = [_check_entry(c, keep_columns=True) for c in contract.checks]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _check_entry(check: Check, *, keep_columns: bool) -> dict[str, Any]:
    args = {k: v for k, v in check.params.items() if v is not None and k != "expr"}
    if "source" in args:
        args["expr"] = args.pop("source")
    if "max_age" in args:
        args["max_age"] = f"{int(args['max_age'].total_seconds())}s"
    if keep_columns and check.columns:
        key = "columns" if check.kind == "unique" else "column"
        args[key] = list(check.columns) if check.kind == "unique" else check.columns[0]
    if check.kind in ("expression", "aggregate") or (check.name and check.kind != "distribution"):
        args.setdefault("name", check.rule)
    entry: dict[str, Any] = {check.kind: args or None}
    if check.severity.value != "error":
        entry["severity"] = check.severity.value
    if check.mostly != 1.0:
        entry["mostly"] = check.mostly
    if check.nulls != "pass" and check.kind != "not_null":
        entry["nulls"] = check.nulls
    return entry
