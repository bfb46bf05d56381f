"""Vectorised key encoding writes exactly the text encode_key writes (the stores' keys)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.storage.online.base import encode_key, encode_keys

TEXT = st.one_of(st.none(), st.text())
INTS = st.one_of(st.none(), st.integers(-(2**62), 2**62))


@settings(max_examples=300)
@given(st.lists(st.tuples(TEXT, INTS), min_size=1, max_size=20))
def test_encode_keys_equals_encode_key_row_by_row(
    rows: list[tuple[str | None, int | None]],
) -> None:
    frame = pl.DataFrame(rows, schema={"a": pl.String, "b": pl.Int64}, orient="row")
    assert encode_keys(frame, ["a", "b"]) == [encode_key(r) for r in rows]


def test_other_key_types_fall_back_to_encode_key() -> None:
    frame = pl.DataFrame({"ratio": [0.5, 1.25], "name": ["a", "b"]})
    assert encode_keys(frame, ["ratio", "name"]) == [encode_key(r) for r in frame.rows()]
