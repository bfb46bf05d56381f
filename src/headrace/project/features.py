"""The feature store of a project: registry, training sets, materialisation, online lookups.

``project.features`` is the one entry point model code needs:

- :meth:`FeatureStore.get_training_data` — point-in-time correct training sets (the exact
  semantics are in :mod:`headrace.storage.offline`);
- :meth:`FeatureStore.materialize` — latest values into the online store;
- :meth:`FeatureStore.get_online_features` — feature vectors with a status per value;
- :meth:`FeatureStore.bind_model` — which feature set version a model version was trained on.

Feature views and feature sets are registered (versioned) when the pipeline declaring them is
run or when the store first needs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import polars as pl

from headrace.core.features import FeatureRef, FeatureSet, FeatureView
from headrace.core.pipeline import Pipeline
from headrace.core.records import DatasetVersion
from headrace.errors import DatasetNotFoundError, EntityRowsError, UnknownFeatureError
from headrace.project.online import OnlineFeatures, OnlineReader, materialise_view
from headrace.storage.offline import JoinStats, ViewSlice, point_in_time_join
from headrace.storage.online.base import OnlineStore
from headrace.storage.registry import (
    FeatureRegistry,
    FeatureSetVersion,
    MaterialisationRecord,
    ModelBinding,
    TrainingSetRecord,
)

if TYPE_CHECKING:
    from headrace.project.project import Project

__all__ = ["FeatureStore", "Materialised", "TrainingSet"]

_LATEST_TTL = 5.0
"""Seconds a resolved "latest feature set version" is reused by lookups."""


@dataclass(frozen=True)
class TrainingSet:
    """A built training set: the frame plus what it was built from."""

    frame: pl.DataFrame
    feature_set: FeatureSetVersion
    record: TrainingSetRecord
    unusable_rows: int
    """Entity rows with a null key or timestamp (kept, with null features)."""
    stats: JoinStats


@dataclass(frozen=True)
class Materialised:
    """What one materialisation of one view version did."""

    view: str
    view_version: int
    dataset_version: int
    rows: int
    """Entity entries written (upserted)."""
    incremental: bool
    skipped: bool = False
    """True when the store was already up to date."""
    seconds: float = 0.0


@dataclass
class _Cache:
    latest: dict[str, tuple[float, FeatureSetVersion]] = field(default_factory=dict)
    pinned: dict[tuple[str, int], FeatureSetVersion] = field(default_factory=dict)
    views: dict[tuple[str, int], FeatureView] = field(default_factory=dict)


class FeatureStore:
    """Feature store operations of one project (``project.features``)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.registry = FeatureRegistry(project.metadata)
        self._synced: set[int] = set()
        self._cache = _Cache()

    # -- registry ----------------------------------------------------------------------------

    def register(self, pipeline: Pipeline) -> None:
        """Register (version) the pipeline's feature views and feature sets."""
        if id(pipeline) in self._synced:
            return
        versions = {
            name: self.registry.register_view(view).version
            for name, view in pipeline.feature_views.items()
        }
        for feature_set in pipeline.feature_sets.values():
            self.registry.register_feature_set(feature_set, versions)
        self._synced.add(id(pipeline))
        self._cache.latest.clear()

    def _sync(self) -> None:
        for pipeline in self.project.pipelines.values():
            self.register(pipeline)

    def feature_set(
        self,
        name: str | FeatureSet,
        version: int | None = None,
        *,
        model: str | None = None,
        model_version: str | None = None,
    ) -> FeatureSetVersion:
        """The feature set version to use: a model's binding, a pinned version, or the newest."""
        if model is not None:
            if model_version is None:
                msg = f"model {model!r}: also give its version (model_version=...)"
                raise UnknownFeatureError(msg)
            binding = self.registry.binding(model, model_version)
            assert binding is not None
            return self._pinned(binding.feature_set, binding.feature_set_version)
        label = name.name if isinstance(name, FeatureSet) else name
        if version is not None:
            return self._pinned(label, version)
        cached = self._cache.latest.get(label)
        if cached is not None and time.monotonic() - cached[0] < _LATEST_TTL:
            return cached[1]
        self._sync()
        found = self.registry.feature_set(label)
        self._cache.latest[label] = (time.monotonic(), found)
        return found

    def _pinned(self, name: str, version: int) -> FeatureSetVersion:
        key = (name, version)
        if key not in self._cache.pinned:
            self._sync()
            self._cache.pinned[key] = self.registry.feature_set(name, version)
        return self._cache.pinned[key]

    def view(self, name: str, version: int) -> FeatureView:
        """A registered view version as a :class:`FeatureView`."""
        key = (name, version)
        if key not in self._cache.views:
            for found in self.registry.view_versions(name):
                self._cache.views[(name, found.version)] = FeatureView.from_definition(
                    found.definition
                )
            if key not in self._cache.views:
                msg = f"feature view {name!r} has no registered version {version}"
                raise UnknownFeatureError(msg)
        return self._cache.views[key]

    def bind_model(
        self, model: str, model_version: str, feature_set: str, version: int | None = None
    ) -> ModelBinding:
        """Record that ``model`` ``model_version`` is trained on a feature set version."""
        self._sync()
        return self.registry.bind_model(model, model_version, feature_set, version)

    def view_data(self, name: str, version: int) -> DatasetVersion:
        """The newest offline dataset version computed by view ``name`` version ``version``."""
        fingerprint = self.registry_fingerprint(name, version)
        for entry in self.project.metadata.dataset_history(name):
            if entry.code_hash == fingerprint:
                return entry
        msg = (
            f"feature view {name!r} v{version} has no computed data yet: run the pipeline that "
            f"declares it (`headrace run`)"
        )
        raise DatasetNotFoundError(msg)

    def registry_fingerprint(self, name: str, version: int) -> str:
        """The fingerprint of a registered view version."""
        for found in self.registry.view_versions(name):
            if found.version == version:
                return found.fingerprint
        msg = f"feature view {name!r} has no registered version {version}"
        raise UnknownFeatureError(msg)

    # -- training data -------------------------------------------------------------------------

    def get_training_data(
        self,
        entity_rows: pl.DataFrame | pl.LazyFrame,
        feature_set: str | FeatureSet,
        *,
        version: int | None = None,
        model: str | None = None,
        model_version: str | None = None,
        timestamp: str = "event_timestamp",
        created_cutoff: bool = False,
        memory_budget: int | None = None,
    ) -> TrainingSet:
        """Entity rows plus each feature of the set, point-in-time correct.

        ``entity_rows`` needs the join keys of every entity in the set and a ``timestamp``
        column. The result has one row per entity row, in the input order; feature columns
        are named ``view__feature``. ``created_cutoff=True`` also excludes values recorded
        after each row's timestamp. See :mod:`headrace.storage.offline` for the exact rules.
        """
        chosen = self.feature_set(feature_set, version, model=model, model_version=model_version)
        rows = entity_rows.collect() if isinstance(entity_rows, pl.LazyFrame) else entity_rows
        slices, inputs = self._slices(chosen)
        budget = memory_budget or self.project.settings.features.memory_budget_mb << 20
        frame, stats = point_in_time_join(
            rows, timestamp, slices, created_cutoff=created_cutoff, memory_budget=budget
        )
        record = self.registry.record_training_set(
            chosen,
            frame.height,
            inputs,
            {"timestamp": timestamp, "created_cutoff": created_cutoff},
        )
        return TrainingSet(frame, chosen, record, stats.unusable_rows, stats)

    def _slices(
        self, chosen: FeatureSetVersion
    ) -> tuple[list[ViewSlice], dict[str, dict[str, Any]]]:
        by_view: dict[str, list[FeatureRef]] = {}
        for ref, _ in chosen.features:
            by_view.setdefault(ref.view, []).append(ref)
        slices = []
        inputs: dict[str, dict[str, Any]] = {}
        for name, refs in by_view.items():
            view_version = chosen.view_versions[name]
            view = self.view(name, view_version)
            data = self.view_data(name, view_version)
            slices.append(
                ViewSlice(
                    view=view,
                    data=self.project.datasets.scan(name, data.version),
                    features=tuple(r.feature for r in refs),
                    columns=tuple(r.column for r in refs),
                    size_bytes=_in_memory_estimate(data),
                )
            )
            inputs[name] = {
                "dataset": name,
                "version": data.version,
                "view_version": view_version,
            }
        return slices, inputs

    # -- online ------------------------------------------------------------------------------

    @cached_property
    def online_store(self) -> OnlineStore:
        """The configured online store (SQLite in the state folder by default)."""
        from headrace.storage.online.factory import open_online_store

        return open_online_store(
            self.online_store_url,
            base_dir=self.project.state_dir,
            namespace=self.project.settings.project.name,
        )

    @property
    def online_store_url(self) -> str:
        """Where the online store is ([features] online_store)."""
        return self.project.settings.features.online_store or "sqlite:///online.db"

    @cached_property
    def _reader(self) -> OnlineReader:
        return OnlineReader(self.online_store, self.view, self._table_kinds)

    def live_view_versions(self) -> list[tuple[str, int]]:
        """View versions lookups can ask for.

        The newest version of each declared view, and every version pinned by the newest
        feature set versions or by a model binding.
        """
        self._sync()
        live: dict[tuple[str, int], None] = {}
        for pipeline in self.project.pipelines.values():
            for view in pipeline.feature_views.values():
                live[(view.name, self.registry.register_view(view).version)] = None
        sets = [self.registry.feature_set(n) for n in self.registry.feature_set_names()]
        sets += [
            self.registry.feature_set(b.feature_set, b.feature_set_version)
            for b in self.registry.bindings()
        ]
        for chosen in sets:
            for name, version in chosen.view_versions.items():
                live[(name, version)] = None
        return list(live)

    def materialize(
        self,
        views: Iterable[str] | None = None,
        *,
        as_of: datetime | None = None,
        chunk_rows: int = 20_000,
        on_progress: Any = None,
    ) -> list[Materialised]:
        """Write the latest value per entity of each live view version to the online store.

        Incremental: only the rows a view's newer dataset versions recomputed are read.
        Idempotent and ordered: writing a value older than the stored one changes nothing.
        ``as_of`` materialises the values as of a past time (default: now).
        """
        wanted = set(views) if views is not None else None
        results = []
        for name, version in self.live_view_versions():
            if wanted is not None and name not in wanted:
                continue
            try:
                data = self.view_data(name, version)
            except DatasetNotFoundError:
                continue  # declared but never computed: nothing to serve yet
            results.append(
                self._materialise_one(name, version, data, as_of, chunk_rows, on_progress)
            )
        if wanted is not None:
            unknown = wanted - {r.view for r in results}
            if unknown:
                msg = (
                    f"no computed feature view named {', '.join(sorted(unknown))}; run the "
                    "pipeline first, or check the name (`headrace features list`)"
                )
                raise UnknownFeatureError(msg)
        return results

    def _materialise_one(  # noqa: PLR0917 - private
        self,
        name: str,
        version: int,
        data: DatasetVersion,
        as_of: datetime | None,
        chunk_rows: int,
        on_progress: Any,
    ) -> Materialised:
        started = time.perf_counter()
        view = self.view(name, version)
        store_id = self.online_store_url
        last = self.registry.last_materialisation(store_id, name, version)
        if last is not None and last.dataset_version == data.version and last.as_of == as_of:
            return Materialised(name, version, data.version, 0, incremental=True, skipped=True)
        since = None
        if last is not None and last.as_of == as_of:
            since = self._recomputed_since(name, last.dataset_version, data.version)
        written = materialise_view(
            view,
            version,
            self.project.datasets.scan(name, data.version),
            self.online_store,
            self._table_kinds(name, version),
            since=since,
            as_of=as_of,
            chunk_rows=chunk_rows,
            on_progress=on_progress,
        )
        self.registry.record_materialisation(
            MaterialisationRecord(
                store=store_id,
                view=name,
                view_version=version,
                dataset_version=data.version,
                as_of=as_of,
                rows=written,
                materialised_at=datetime.now(UTC),
            )
        )
        return Materialised(
            name,
            version,
            data.version,
            written,
            incremental=since is not None,
            seconds=time.perf_counter() - started,
        )

    def _recomputed_since(self, name: str, old: int, new: int) -> datetime | None:
        """The earliest event time rewritten by versions (old, new]; None: needs a full pass."""
        from headrace.engines.batch.feature_step import RECOMPUTED_FROM

        earliest: datetime | None = None
        for version in range(old + 1, new + 1):
            try:
                meta = self.project.datasets.commit_metadata(name, version)
            except DatasetNotFoundError:
                return None
            text = meta.get(RECOMPUTED_FROM, "")
            if not text:
                return None
            moment = datetime.fromisoformat(text)
            earliest = moment if earliest is None else min(earliest, moment)
        return earliest

    def _table_kinds(self, name: str, version: int) -> tuple[str, ...]:
        view = self.view(name, version)
        schema = self.view_data(name, version).schema
        return tuple(_kind(schema.get(f, "String")) for f in view.feature_names)

    def get_online_features(
        self,
        feature_set: str | FeatureSet,
        entity_keys: Sequence[Mapping[str, Any]] | pl.DataFrame,
        *,
        version: int | None = None,
        model: str | None = None,
        model_version: str | None = None,
        as_of: datetime | None = None,
    ) -> OnlineFeatures:
        """Feature vectors for ``entity_keys`` with a status per value.

        Each value is ``present``, ``missing`` (the store has nothing for that entity) or
        ``expired`` (its event time is older than the view's TTL at ``as_of``, default now;
        the value is then null). The answer names the feature set version used.
        """
        chosen = self.feature_set(feature_set, version, model=model, model_version=model_version)
        keys = entity_keys.to_dicts() if isinstance(entity_keys, pl.DataFrame) else entity_keys
        if not keys:
            msg = "no entity keys given: pass at least one {join key: value} mapping"
            raise EntityRowsError(msg)
        return self._reader.read(chosen, keys, as_of or datetime.now(UTC))

    def close(self) -> None:
        """Close the online store connection (if opened)."""
        if "online_store" in self.__dict__:
            self.online_store.close()
            del self.__dict__["online_store"]
            self.__dict__.pop("_reader", None)


def _kind(dtype: str) -> str:
    text = dtype.lower()
    if text.startswith(("float", "decimal")):
        return "float"
    if text.startswith(("int", "uint")):
        return "int"
    if text == "boolean":
        return "bool"
    return "str"


def _in_memory_estimate(data: DatasetVersion) -> int:
    """Rough in-memory size of a dataset version (Parquet compresses ~3-5x)."""
    return int(data.bytes) * 4
