"""Column lineage as data: which input columns each output column is computed from.

The vocabulary is OpenLineage's (``ColumnLineageDatasetFacet`` 1-2-0): a *direct*
dependency is one whose values flow into the output column (``IDENTITY`` when copied as they
are, ``TRANSFORMATION`` when computed from them, ``AGGREGATION`` when summarised over rows);
an *indirect* one only decides which rows or which branch (``FILTER``, ``JOIN``, ``GROUP_BY``,
``SORT``, ``WINDOW``, ``CONDITIONAL``). Indirect dependencies of the whole output (a filter, a
join key) are kept apart from the per-column ones, as the facet's ``dataset`` list.

Deriving lineage never guesses: a deriver that meets something it does not understand raises
:class:`LineageUnavailable`, and the emitter then sends no column lineage for that node.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ColumnLineage",
    "Dependency",
    "Deps",
    "LineageUnavailable",
    "Subtype",
    "Transformation",
    "merge",
    "promote",
]


class LineageUnavailable(Exception):
    """The node's column lineage cannot be derived exactly; the reason is the message."""


class Subtype(enum.StrEnum):
    """OpenLineage transformation subtypes (the type, DIRECT or INDIRECT, follows from it)."""

    IDENTITY = "IDENTITY"
    TRANSFORMATION = "TRANSFORMATION"
    AGGREGATION = "AGGREGATION"
    FILTER = "FILTER"
    JOIN = "JOIN"
    GROUP_BY = "GROUP_BY"
    SORT = "SORT"
    WINDOW = "WINDOW"
    CONDITIONAL = "CONDITIONAL"

    @property
    def direct(self) -> bool:
        """True for the subtypes whose values flow into the output column."""
        return self in (Subtype.IDENTITY, Subtype.TRANSFORMATION, Subtype.AGGREGATION)


@dataclass(frozen=True, order=True)
class Dependency:
    """One input column: ``field`` of input dataset ``dataset``."""

    dataset: str
    field: str


@dataclass(frozen=True, order=True)
class Transformation:
    """How an output column depends on an input column."""

    subtype: Subtype
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The facet's ``transformations`` item."""
        out: dict[str, Any] = {
            "type": "DIRECT" if self.subtype.direct else "INDIRECT",
            "subtype": self.subtype.value,
        }
        if self.description:
            out["description"] = self.description
        return out


Deps = dict[Dependency, set[Transformation]]
"""Input column -> the ways an output column (or the whole output) depends on it."""


def merge(*many: Mapping[Dependency, set[Transformation]]) -> Deps:
    """The union of several dependency maps."""
    out: Deps = {}
    for deps in many:
        for dependency, how in deps.items():
            out.setdefault(dependency, set()).update(how)
    return out


def promote(deps: Mapping[Dependency, set[Transformation]], subtype: Subtype) -> Deps:
    """``deps`` seen through one more operation of kind ``subtype``.

    Direct dependencies become ``subtype`` (an aggregation of a transformation is an
    aggregation; a transformation of a copied column is a transformation), except that an
    aggregation stays one; indirect dependencies are kept as they are.
    """
    out: Deps = {}
    for dependency, how in deps.items():
        kinds: set[Transformation] = set()
        for item in how:
            if not item.subtype.direct or item.subtype is Subtype.AGGREGATION:
                kinds.add(item)
            else:
                kinds.add(Transformation(subtype))
        out[dependency] = kinds
    return out


@dataclass(frozen=True)
class ColumnLineage:
    """Per output column its input columns, and the inputs that shape the whole output."""

    fields: Mapping[str, Mapping[Dependency, frozenset[Transformation]]]
    dataset: Mapping[Dependency, frozenset[Transformation]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        fields: Mapping[str, Mapping[Dependency, Iterable[Transformation]]],
        dataset: Mapping[Dependency, Iterable[Transformation]] | None = None,
    ) -> ColumnLineage:
        """Freeze mutable maps; output columns without any input column are left out."""
        frozen = {
            name: {dep: frozenset(how) for dep, how in deps.items() if how}
            for name, deps in fields.items()
            if deps
        }
        return cls(
            fields={name: deps for name, deps in frozen.items() if deps},
            dataset={dep: frozenset(how) for dep, how in (dataset or {}).items() if how},
        )

    def __bool__(self) -> bool:
        return bool(self.fields) or bool(self.dataset)

    def restricted(self, columns: Iterable[str]) -> ColumnLineage:
        """Only the output columns in ``columns`` (the stored dataset's)."""
        wanted = set(columns)
        return ColumnLineage(
            fields={k: v for k, v in self.fields.items() if k in wanted}, dataset=self.dataset
        )

    def to_facet_body(self, namespace_of: Mapping[str, str]) -> dict[str, Any]:
        """The ``fields`` and ``dataset`` members of a ``columnLineage`` facet.

        ``namespace_of`` maps each input dataset name to its OpenLineage namespace.
        """

        def items(deps: Mapping[Dependency, frozenset[Transformation]]) -> list[dict[str, Any]]:
            return [
                {
                    "namespace": namespace_of[dep.dataset],
                    "name": dep.dataset,
                    "field": dep.field,
                    "transformations": [t.to_dict() for t in sorted(how)],
                }
                for dep, how in sorted(deps.items())
            ]

        body: dict[str, Any] = {
            "fields": {name: {"inputFields": items(deps)} for name, deps in self.fields.items()}
        }
        if self.dataset:
            body["dataset"] = items(self.dataset)
        return body

    def datasets(self) -> set[str]:
        """The input datasets the lineage names."""
        names = {dep.dataset for deps in self.fields.values() for dep in deps}
        return names | {dep.dataset for dep in self.dataset}
