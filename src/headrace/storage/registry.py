"""The feature registry: versions of feature views and feature sets, and model bindings.

Versions are numbers per name, assigned in order of first sight of a definition's
fingerprint: registering an unchanged definition returns its existing version; a changed one
gets the next number and the old version stays, unchanged, for the models that use it.
A feature set's fingerprint covers its feature list *and* the versions of the views it reads,
so changing a view's logic also makes a new feature-set version.

Tables live in the metadata database (see :mod:`headrace.storage.schema`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from headrace.core.features import FeatureRef, FeatureSet, FeatureView
from headrace.core.fingerprint import key_hash
from headrace.errors import MetadataError, UnknownFeatureError
from headrace.storage.metadata import MetadataStore
from headrace.storage.schema import (
    feature_sets,
    feature_views,
    materialisations,
    model_bindings,
    training_sets,
)

__all__ = [
    "FeatureRegistry",
    "FeatureSetVersion",
    "MaterialisationRecord",
    "ModelBinding",
    "TrainingSetRecord",
    "ViewVersion",
]


@dataclass(frozen=True)
class ViewVersion:
    """One registered version of a feature view."""

    name: str
    version: int
    fingerprint: str
    definition: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class FeatureSetVersion:
    """One registered version of a feature set: each feature pinned to a view version."""

    name: str
    version: int
    fingerprint: str
    features: tuple[tuple[FeatureRef, int], ...]
    """(feature, view version) in the set's order."""
    created_at: datetime

    @property
    def view_versions(self) -> dict[str, int]:
        """View name -> pinned view version."""
        return {ref.view: version for ref, version in self.features}

    @property
    def columns(self) -> tuple[str, ...]:
        """Output column names (``view__feature``), in order."""
        return tuple(ref.column for ref, _ in self.features)


@dataclass(frozen=True)
class ModelBinding:
    """A model version and the feature set version it was trained on."""

    model: str
    model_version: str
    feature_set: str
    feature_set_version: int
    created_at: datetime


@dataclass(frozen=True)
class MaterialisationRecord:
    """How far a view version was materialised into an online store."""

    store: str
    view: str
    view_version: int
    dataset_version: int
    as_of: datetime | None
    """The lookup time materialised for (None: the time of materialisation)."""
    rows: int
    materialised_at: datetime


@dataclass(frozen=True)
class TrainingSetRecord:
    """A training set that was built: what it read, so it can be reproduced and retained."""

    training_set_id: str
    feature_set: str
    feature_set_version: int
    created_at: datetime
    rows: int
    inputs: Mapping[str, Any]
    """View name -> {"dataset": name, "version": Delta version, "view_version": n}."""
    options: Mapping[str, Any]


_RETRIES = 5
T = TypeVar("T")


class FeatureRegistry:
    """Registry operations over the project's metadata database."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    # -- views -------------------------------------------------------------------------------

    def register_view(self, view: FeatureView) -> ViewVersion:
        """The version of ``view``'s current definition, registering it when new."""
        fingerprint = view.fingerprint()
        definition = json.loads(json.dumps(view.definition()))
        return self._register(
            feature_views,
            view.name,
            fingerprint,
            {"definition": definition},
            _view,
        )

    def view_versions(self, name: str) -> list[ViewVersion]:
        """All versions of one view, oldest first."""
        query = (
            sa.select(feature_views)
            .where(feature_views.c.name == name)
            .order_by(feature_views.c.version)
        )
        with self.metadata.reading() as c:
            return [_view(row) for row in c.execute(query).mappings()]

    # -- feature sets ------------------------------------------------------------------------

    def register_feature_set(
        self, feature_set: FeatureSet, view_versions: Mapping[str, int]
    ) -> FeatureSetVersion:
        """The version of ``feature_set`` with its views at ``view_versions``."""
        pinned = [[ref.view, ref.feature, view_versions[ref.view]] for ref in feature_set.refs]
        fingerprint = key_hash(json.dumps(pinned))
        return self._register(
            feature_sets,
            feature_set.name,
            fingerprint,
            {"features": pinned},
            _feature_set,
        )

    def feature_set(self, name: str, version: int | None = None) -> FeatureSetVersion:
        """A feature set version (default: the newest); UnknownFeatureError when absent."""
        query = sa.select(feature_sets).where(feature_sets.c.name == name)
        if version is None:
            query = query.order_by(feature_sets.c.version.desc()).limit(1)
        else:
            query = query.where(feature_sets.c.version == version)
        with self.metadata.reading() as c:
            row = c.execute(query).mappings().first()
        if row is None:
            known = self.feature_set_names()
            if name in known and version is not None:
                versions = [v.version for v in self.feature_set_versions(name)]
                msg = (
                    f"feature set {name!r} has no version {version}; it has versions "
                    f"{', '.join(map(str, versions))}"
                )
            else:
                msg = (
                    f"no feature set {name!r} is registered; known: "
                    f"{', '.join(known) or 'none'} (feature sets are registered when the "
                    "pipeline that declares them is loaded)"
                )
            raise UnknownFeatureError(msg)
        return _feature_set(row)

    def feature_set_versions(self, name: str) -> list[FeatureSetVersion]:
        """All versions of one feature set, oldest first."""
        query = (
            sa.select(feature_sets)
            .where(feature_sets.c.name == name)
            .order_by(feature_sets.c.version)
        )
        with self.metadata.reading() as c:
            return [_feature_set(row) for row in c.execute(query).mappings()]

    def feature_set_names(self) -> list[str]:
        """Names of all registered feature sets."""
        query = sa.select(feature_sets.c.name).distinct().order_by(feature_sets.c.name)
        with self.metadata.reading() as c:
            return [str(row[0]) for row in c.execute(query)]

    # -- models ------------------------------------------------------------------------------

    def bind_model(
        self, model: str, model_version: str, feature_set: str, version: int | None = None
    ) -> ModelBinding:
        """Bind ``model``/``model_version`` to a feature set version (default: the newest).

        A binding is permanent: binding the same model version to another feature set version
        is refused (a trained model cannot change what it was trained on).
        """
        target = self.feature_set(feature_set, version)
        existing = self.binding(model, model_version, missing_ok=True)
        if existing is not None:
            if (existing.feature_set, existing.feature_set_version) == (
                target.name,
                target.version,
            ):
                return existing
            msg = (
                f"model {model!r} version {model_version!r} is already bound to feature set "
                f"{existing.feature_set!r} v{existing.feature_set_version}; a trained model "
                "keeps its features: register a new model version instead"
            )
            raise UnknownFeatureError(msg)
        row: dict[str, Any] = {
            "model": model,
            "model_version": model_version,
            "feature_set": target.name,
            "feature_set_version": target.version,
            "created_at": datetime.now(UTC),
        }
        with self.metadata.writing() as c:
            c.execute(sa.insert(model_bindings).values(**row))
        return ModelBinding(**row)

    def binding(
        self, model: str, model_version: str, *, missing_ok: bool = False
    ) -> ModelBinding | None:
        """The feature set version a model version was trained on."""
        query = sa.select(model_bindings).where(
            model_bindings.c.model == model, model_bindings.c.model_version == model_version
        )
        with self.metadata.reading() as c:
            row = c.execute(query).mappings().first()
        if row is None:
            if missing_ok:
                return None
            msg = (
                f"model {model!r} version {model_version!r} is not bound to a feature set; "
                f"bind it with `headrace features bind {model} {model_version} --feature-set "
                "NAME` (or FeatureStore.bind_model)"
            )
            raise UnknownFeatureError(msg)
        return _binding(row)

    def bindings(self) -> list[ModelBinding]:
        """Every model binding."""
        query = sa.select(model_bindings).order_by(
            model_bindings.c.model, model_bindings.c.model_version
        )
        with self.metadata.reading() as c:
            return [_binding(row) for row in c.execute(query).mappings()]

    # -- materialisation and training sets --------------------------------------------------

    def last_materialisation(
        self, store: str, view: str, view_version: int
    ) -> MaterialisationRecord | None:
        """How far a view version was materialised into ``store``."""
        query = sa.select(materialisations).where(
            materialisations.c.store == store,
            materialisations.c.view == view,
            materialisations.c.view_version == view_version,
        )
        with self.metadata.reading() as c:
            row = c.execute(query).mappings().first()
        return None if row is None else MaterialisationRecord(**_plain(row))

    def record_materialisation(self, record: MaterialisationRecord) -> None:
        """Store (replace) the materialisation state of a view version in a store."""
        key = (
            (materialisations.c.store == record.store)
            & (materialisations.c.view == record.view)
            & (materialisations.c.view_version == record.view_version)
        )
        with self.metadata.writing() as c:
            c.execute(sa.delete(materialisations).where(key))
            c.execute(sa.insert(materialisations).values(**record.__dict__))

    def record_training_set(
        self,
        feature_set: FeatureSetVersion,
        rows: int,
        inputs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> TrainingSetRecord:
        """Remember a built training set (what it read), for lineage and retention."""
        record = TrainingSetRecord(
            training_set_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + secrets.token_hex(4),
            feature_set=feature_set.name,
            feature_set_version=feature_set.version,
            created_at=datetime.now(UTC),
            rows=rows,
            inputs=dict(inputs),
            options=dict(options),
        )
        with self.metadata.writing() as c:
            c.execute(sa.insert(training_sets).values(**record.__dict__))
        return record

    def training_sets(self, feature_set: str | None = None) -> list[TrainingSetRecord]:
        """Recorded training sets, newest first."""
        query = sa.select(training_sets).order_by(training_sets.c.created_at.desc())
        if feature_set is not None:
            query = query.where(training_sets.c.feature_set == feature_set)
        with self.metadata.reading() as c:
            return [TrainingSetRecord(**_plain(row)) for row in c.execute(query).mappings()]

    # -- internals -------------------------------------------------------------------------

    def _register(
        self,
        table: sa.Table,
        name: str,
        fingerprint: str,
        values: Mapping[str, Any],
        build: Callable[[sa.RowMapping], T],
    ) -> T:
        existing = sa.select(table).where(table.c.name == name, table.c.fingerprint == fingerprint)
        for attempt in range(_RETRIES):
            with self.metadata.reading() as c:
                row = c.execute(existing).mappings().first()
            if row is not None:
                return build(row)
            try:
                with self.metadata.writing() as c:
                    newest = c.execute(
                        sa.select(sa.func.max(table.c.version)).where(table.c.name == name)
                    ).scalar()
                    c.execute(
                        sa.insert(table).values(
                            name=name,
                            version=int(newest or 0) + 1,
                            fingerprint=fingerprint,
                            created_at=datetime.now(UTC),
                            **values,
                        )
                    )
            except MetadataError:  # another process registered it first: read again
                if attempt == _RETRIES - 1:
                    raise
        with self.metadata.reading() as c:
            return build(c.execute(existing).mappings().one())


def _view(row: sa.RowMapping) -> ViewVersion:
    return ViewVersion(
        name=row["name"],
        version=int(row["version"]),
        fingerprint=row["fingerprint"],
        definition=row["definition"],
        created_at=row["created_at"],
    )


def _feature_set(row: sa.RowMapping) -> FeatureSetVersion:
    features: Sequence[Sequence[Any]] = row["features"]
    return FeatureSetVersion(
        name=row["name"],
        version=int(row["version"]),
        fingerprint=row["fingerprint"],
        features=tuple((FeatureRef(str(v), str(f)), int(n)) for v, f, n in features),
        created_at=row["created_at"],
    )


def _plain(row: sa.RowMapping) -> dict[str, Any]:
    return dict(row)


def _binding(row: sa.RowMapping) -> ModelBinding:
    return ModelBinding(**_plain(row))
