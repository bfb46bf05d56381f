"""The newest row per entity: the in-memory pick of streaming jobs equals the batch's sort."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.project.online import newest_rows

START = datetime(2024, 3, 1, tzinfo=UTC)


def _view(created: bool) -> hr.FeatureView:
    return hr.FeatureView(
        "v",
        entity=hr.Entity("e", ["a", "b"]),
        source="s",
        event_time="ts",
        created_time="made" if created else None,
        ttl="1d",
        features=[hr.Feature("x", pl.col("x"))],
    )


def _sorted_pick(view: hr.FeatureView, rows: pl.DataFrame) -> pl.DataFrame:
    """What ``materialise_view`` keeps: sort by time (stable), the last row per entity."""
    order = [view.event_time] + ([view.created_time] if view.created_time else [])
    return (
        rows.select("a", "b", *order, "x")
        .sort(order, maintain_order=True)
        .unique(subset=["a", "b"], keep="last", maintain_order=False)
    )


def _canonical(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return sorted(frame.rows(), key=repr)


rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["ada", "bob", None]),
        st.integers(0, 2),
        st.one_of(st.none(), st.integers(0, 4)),  # few distinct times: many ties
        st.one_of(st.none(), st.integers(0, 2)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(rows=rows_strategy, created=st.booleans())
def test_newest_rows_picks_what_the_sorted_batch_pick_does(
    rows: list[tuple[str | None, int, int | None, int | None]], created: bool
) -> None:
    def stamp(minutes: int | None) -> datetime | None:
        return None if minutes is None else START + timedelta(minutes=minutes)

    frame = pl.DataFrame(
        {
            "a": [r[0] for r in rows],
            "b": [r[1] for r in rows],
            "ts": [stamp(r[2]) for r in rows],
            "made": [stamp(r[3]) for r in rows],
            "x": list(range(len(rows))),  # tells tied rows apart
        },
        schema={
            "a": pl.String,
            "b": pl.Int64,
            "ts": pl.Datetime("us", "UTC"),
            "made": pl.Datetime("us", "UTC"),
            "x": pl.Int64,
        },
    )
    view = _view(created)
    assert _canonical(newest_rows(view, frame)) == _canonical(_sorted_pick(view, frame))
