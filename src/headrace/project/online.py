"""Online side of the feature store: materialising views and reading feature vectors."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from headrace.core.features import FeatureView
from headrace.errors import EntityRowsError
from headrace.storage.online.base import (
    OnlineEntry,
    OnlineRows,
    OnlineStore,
    OnlineTable,
    encode_key,
    encode_keys,
)
from headrace.storage.registry import FeatureSetVersion

__all__ = ["OnlineFeatures", "OnlineReader", "materialise_view", "newest_rows", "write_newest"]

PRESENT = "present"
MISSING = "missing"
EXPIRED = "expired"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OnlineFeatures:
    """Feature vectors for a batch of entities, with a status per value."""

    feature_set: str
    version: int
    features: tuple[str, ...]
    """Feature column names (``view__feature``), in the set's order."""
    values: list[list[Any]]
    """One list per entity, aligned with ``features``; null unless the status is present."""
    statuses: list[list[str]]
    """``present``, ``missing`` or ``expired`` per value."""
    event_times: list[list[datetime | None]]
    """Event time of each value (None when missing)."""

    def to_dicts(self) -> list[dict[str, Any]]:
        """One ``{feature: value}`` mapping per entity."""
        return [dict(zip(self.features, row, strict=True)) for row in self.values]

    def to_frame(self) -> pl.DataFrame:
        """The values as a frame (one row per entity)."""
        return pl.DataFrame(self.values, schema=list(self.features), orient="row")


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class OnlineReader:
    """Reads feature-set vectors from an online store (the in-process hot path)."""

    def __init__(
        self,
        store: OnlineStore,
        view_of: Callable[[str, int], FeatureView],
        kinds_of: Callable[[str, int], tuple[str, ...]],
    ) -> None:
        self.store = store
        self._view_of = view_of
        self._kinds_of = kinds_of
        self._plans: dict[tuple[str, int], list[_ViewRead]] = {}

    def read(
        self, chosen: FeatureSetVersion, keys: Sequence[Mapping[str, Any]], as_of: datetime
    ) -> OnlineFeatures:
        """The vectors of ``keys`` for feature set version ``chosen`` at ``as_of``."""
        plan = self._plan(chosen)
        width = len(chosen.features)
        values: list[list[Any]] = [[None] * width for _ in keys]
        statuses: list[list[str]] = [[MISSING] * width for _ in keys]
        times: list[list[datetime | None]] = [[None] * width for _ in keys]
        now_us = _us(as_of)
        encoded_by_keys: dict[tuple[str, ...], list[str]] = {}  # views of one entity: encode once
        for part in plan:
            encoded = encoded_by_keys.get(part.keys)
            if encoded is None:
                encoded = encoded_by_keys[part.keys] = [
                    part.encode(i, key) for i, key in enumerate(keys)
                ]
            entries = self.store.read(part.table, encoded)
            oldest = now_us - part.ttl_us
            for row, entry in enumerate(entries):
                if entry is None:
                    continue
                _place(entry, part, values[row], statuses[row], times[row], oldest, now_us)
        return OnlineFeatures(chosen.name, chosen.version, chosen.columns, values, statuses, times)

    def _plan(self, chosen: FeatureSetVersion) -> list[_ViewRead]:
        key = (chosen.name, chosen.version)
        plan = self._plans.get(key)
        if plan is None:
            plan = []
            for name, version in chosen.view_versions.items():
                view = self._view_of(name, version)
                table = OnlineTable(
                    name, version, view.feature_names, self._kinds_of(name, version)
                )
                picks = [
                    (out, view.feature_names.index(ref.feature))
                    for out, (ref, _) in enumerate(chosen.features)
                    if ref.view == name
                ]
                plan.append(
                    _ViewRead(
                        table,
                        tuple(view.entity.keys),
                        picks,
                        view.ttl_delta // _MICRO,
                        _runs(picks),
                    )
                )
            self._plans[key] = plan
        return plan


_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class _ViewRead:
    table: OnlineTable
    keys: tuple[str, ...]
    picks: list[tuple[int, int]]
    """(output position, position in the view's stored values)."""
    ttl_us: int
    runs: tuple[tuple[int, int, int, list[str]], ...]
    """``picks`` as runs of consecutive positions: (output start, stored start, length,
    ``[PRESENT] * length``), so a value row is copied by a few slice assignments."""

    def encode(self, index: int, key: Mapping[str, Any]) -> str:
        try:
            if len(self.keys) == 1:
                value = key[self.keys[0]]
                if type(value) is int:  # the common case; exactly what encode_key writes
                    return f"[{value}]"
                return encode_key([value])
            return encode_key([key[k] for k in self.keys])
        except KeyError as exc:
            msg = (
                f"entity {index} ({dict(key)!r}) lacks join key {exc.args[0]!r} needed by "
                f"feature view {self.table.view!r} (keys: {', '.join(self.keys)})"
            )
            raise EntityRowsError(msg) from None


def _runs(picks: list[tuple[int, int]]) -> tuple[tuple[int, int, int, list[str]], ...]:
    """Consecutive (output, stored) positions grouped: [(0, 5), (1, 6), (3, 0)] -> 2 runs."""
    runs: list[list[int]] = []
    for out, position in picks:
        last = runs[-1] if runs else None
        if last is not None and out == last[0] + last[2] and position == last[1] + last[2]:
            last[2] += 1
        else:
            runs.append([out, position, 1])
    return tuple((out, position, n, [PRESENT] * n) for out, position, n in runs)


def _place(  # noqa: PLR0917 - the hot loop's body, kept flat for speed
    entry: OnlineEntry,
    part: _ViewRead,
    values: list[Any],
    statuses: list[str],
    times: list[datetime | None],
    oldest_us: int,
    now_us: int,
) -> None:
    if entry.event_us > now_us:
        return  # recorded for a later time than asked: it did not exist yet
    fresh = entry.event_us >= oldest_us
    moment = _EPOCH + timedelta(microseconds=entry.event_us)
    stored = entry.values
    for out, position, n, present in part.runs:
        end = out + n
        times[out:end] = [moment] * n
        if fresh:
            values[out:end] = stored[position : position + n]
            statuses[out:end] = present
        else:
            statuses[out:end] = [EXPIRED] * n


def materialise_view(
    view: FeatureView,
    version: int,
    data: pl.LazyFrame,
    store: OnlineStore,
    kinds: tuple[str, ...],
    *,
    since: datetime | None,
    as_of: datetime | None,
    chunk_rows: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Upsert the newest row per entity of ``data`` (rows at or after ``since``) into ``store``.

    Rows with event time after ``as_of`` are left out. The newest row per entity is found with
    Polars' streaming engine (memory ~ one row per entity), then written ``chunk_rows`` at a
    time; the store's ordered upsert makes a rerun or an overlapping range harmless. Values
    older than the TTL are written too: lookups report them as ``expired``, not ``missing``.
    """
    keys = list(view.entity.keys)
    event = view.event_time
    order = [event] + ([view.created_time] if view.created_time else [])
    rows = data
    if since is not None:
        rows = rows.filter(pl.col(event) >= since)
    if as_of is not None:
        rows = rows.filter(pl.col(event) <= as_of)
    latest = (
        rows.select(*keys, *order, *view.feature_names)
        .sort(order, maintain_order=True)  # newest last; ties: the last read, as offline
        .unique(subset=keys, keep="last", maintain_order=False)
        .collect(engine="streaming")
    )
    return write_newest(
        view, version, latest, store, kinds, chunk_rows=chunk_rows, on_progress=on_progress
    )


def newest_rows(view: FeatureView, rows: pl.DataFrame) -> pl.DataFrame:
    """The newest row per entity of ``rows`` (in memory), as :func:`materialise_view` picks it.

    Newest by event time, then created time; among ties the last in ``rows``. A frame small
    enough to hold (a streaming micro-batch's outputs) needs no sort: each entity's newest
    time is a windowed max.
    """
    keys = list(view.entity.keys)
    order = [view.event_time] + ([view.created_time] if view.created_time else [])
    picked = rows.select(*keys, *order, *view.feature_names)
    for column in order:  # one at a time: created time breaks ties among the newest events
        newest = pl.col(column).max().over(keys)  # nulls sort first: kept only if all null
        picked = picked.filter(pl.col(column).eq_missing(newest))
    return picked.unique(subset=keys, keep="last", maintain_order=False)


def write_newest(
    view: FeatureView,
    version: int,
    latest: pl.DataFrame,
    store: OnlineStore,
    kinds: tuple[str, ...],
    *,
    chunk_rows: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Upsert ``latest`` (at most one row per entity) into ``store``; rows written."""
    keys = list(view.entity.keys)
    event = view.event_time
    extra = [view.created_time] if view.created_time else []
    table = OnlineTable(view.name, version, view.feature_names, kinds)
    written = 0
    done = 0
    total = latest.height
    temporal = [
        f for f in view.feature_names if latest.schema[f].is_temporal()
    ]  # stored as ISO text
    if temporal:
        latest = latest.with_columns(pl.col(temporal).cast(pl.String))
    for chunk in latest.iter_slices(chunk_rows):
        event_us = chunk[event].dt.epoch("us").to_list()
        created = chunk[extra[0]].dt.epoch("us").to_list() if extra else [None] * chunk.height
        batch = OnlineRows(
            keys=encode_keys(chunk, keys),
            event_us=event_us,
            created_us=created,
            values=chunk.select(view.feature_names).rows(),
        )
        written += store.write(table, batch)
        done += chunk.height
        if on_progress is not None:
            on_progress(done, total)
    return written
