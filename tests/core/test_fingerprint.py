import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from headrace.core.fingerprint import content_hash, key_hash

rows = st.lists(
    st.tuples(st.integers(-5, 5), st.one_of(st.none(), st.text(max_size=3))), max_size=30
)


def _frame(data: list[tuple[int, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(data, schema={"k": pl.Int64, "v": pl.String}, orient="row")


@given(data=rows, seed=st.randoms())
def test_content_hash_ignores_row_order(data: list[tuple[int, str | None]], seed) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(data)
    seed.shuffle(shuffled)
    assert content_hash(_frame(data)) == content_hash(_frame(shuffled))


@given(data=rows, extra=st.tuples(st.integers(-5, 5), st.none()))
def test_content_hash_sees_an_added_row(
    data: list[tuple[int, str | None]], extra: tuple[int, None]
) -> None:
    assert content_hash(_frame(data)) != content_hash(_frame([*data, extra]))


def test_content_hash_sees_the_schema() -> None:
    assert content_hash(pl.DataFrame({"a": [1]})) != content_hash(pl.DataFrame({"b": [1]}))
    assert content_hash(pl.DataFrame({"a": [1]})) != content_hash(pl.DataFrame({"a": [1.0]}))


def test_key_hash_separates_parts() -> None:
    assert key_hash("ab", "c") != key_hash("a", "bc")
    assert key_hash({"x": 1}) == key_hash({"x": 1})
