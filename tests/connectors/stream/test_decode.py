"""Messages to rows: the fast path, every reason code, datetimes, Arrow, and nothing dropped."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.connectors.log import partition_of
from headrace.connectors.stream.base import MALFORMED_SCHEMA, OFFSET, PARTITION
from headrace.connectors.stream.decode import (
    MessagePositions,
    decode_json,
    encode_json,
    partitions_for,
)
from headrace.errors import StreamError
from headrace.testing.brokers import SAMPLE_SCHEMA, sample_rows

SCHEMA = {"key": pl.String(), "ts": pl.Datetime("us", "UTC"), "n": pl.Int32(), "x": pl.Float64()}


def decode(
    values: list[bytes | None], schema: object = SCHEMA
) -> tuple[pl.DataFrame, pl.DataFrame]:
    positions = MessagePositions([0] * len(values), list(range(100, 100 + len(values))))
    return decode_json(values, positions, schema)  # type: ignore[arg-type]


def message(**fields: object) -> bytes:
    return orjson.dumps(fields)


def test_good_messages_become_rows_with_their_positions() -> None:
    values = [message(key="a", ts="2024-03-01T00:00:00Z", n=1, x=0.5)] * 3
    positions = MessagePositions([2, 0, 2], [7, 3, 8])
    rows, malformed = decode_json(values, positions, SCHEMA)
    assert malformed.is_empty()
    assert malformed.schema == pl.Schema(MALFORMED_SCHEMA)
    assert rows.schema == pl.Schema({**SCHEMA, PARTITION: pl.Int32(), OFFSET: pl.Int64()})
    assert rows.select(PARTITION, OFFSET).rows() == [(2, 7), (0, 3), (2, 8)]


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (b"{nope", "not_json", ""),
        (b"", "not_json", "empty message"),
        (None, "not_json", "empty message"),
        (b"[1, 2]", "not_object", "array"),
        (b'"text"', "not_object", "string"),
        (message(key="a", ts="2024-03-01T00:00:00Z", n="one", x=1.0), "wrong_type", "'n'"),
        (message(key="a", ts="2024-03-01T00:00:00Z", n=1, x="high"), "wrong_type", "'x'"),
        (message(key="a", ts="2024-03-01T00:00:00Z", n=2**40, x=1.0), "wrong_type", "'n'"),
        (message(key="a", ts="yesterday", n=1, x=1.0), "wrong_type", "'ts'"),
        (message(key="a", ts=True, n=1, x=1.0), "wrong_type", "'ts'"),
        (message(key="a", n=1, x=1.0), "missing_field", "'ts'"),
        (message(ts="2024-03-01T00:00:00Z"), "missing_field", "'key', 'n', 'x'"),
        (b"\xff\xfe{}", "not_json", ""),
    ],
)
def test_each_bad_message_gets_a_reason_and_the_good_ones_still_come(
    value: bytes | None, reason: str, detail: str
) -> None:
    good = message(key="b", ts="2024-03-01T00:00:00Z", n=1, x=1.0)
    rows, malformed = decode([good, value, good])
    assert rows[OFFSET].to_list() == [100, 102]
    assert malformed.select(OFFSET, "_hr_reason").rows() == [(101, reason)]
    assert detail in malformed["_hr_detail"][0]
    assert malformed["_hr_raw"][0] == (
        "" if value is None else value.decode(errors="backslashreplace")
    )


def test_an_explicit_null_is_a_value_not_a_missing_field() -> None:
    rows, malformed = decode([message(key=None, ts=None, n=None, x=None)])
    assert malformed.is_empty()
    assert rows.select(list(SCHEMA)).rows() == [(None, None, None, None)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T13:30:00+01:30", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00.123456Z", datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-01 12:00:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),  # no offset: UTC
        (1709294400000, datetime(2024, 3, 1, 12, tzinfo=UTC)),  # epoch milliseconds
    ],
)
def test_datetimes_are_iso_text_or_epoch_milliseconds_in_utc(
    text: object, expected: datetime
) -> None:
    other = message(key="a", ts="2024-01-01T00:00:00Z", n=1, x=1.0)
    rows, malformed = decode([other, message(key="a", ts=text, n=1, x=1.0)])
    assert malformed.is_empty()
    assert rows["ts"][1] == expected


def test_a_naive_datetime_column_holds_utc_wall_time() -> None:
    schema = {"ts": pl.Datetime("ms")}
    rows, _ = decode([message(ts="2024-03-01T13:00:00+01:00")], schema)
    assert rows["ts"].to_list() == [datetime(2024, 3, 1, 12)]


def test_pretty_printed_json_is_one_message() -> None:
    pretty = b'{\n  "key": "a",\n  "ts": "2024-03-01T00:00:00Z",\n  "n": 1,\n  "x": 2.5\n}'
    rows, malformed = decode([pretty, message(key="b", ts=0, n=2, x=1.0)])
    assert malformed.is_empty()
    assert rows["key"].to_list() == ["a", "b"]


def test_an_arrow_ipc_message_holds_rows() -> None:
    frame = pl.DataFrame(
        {"key": ["a", "b"], "ts": [datetime(2024, 3, 1), None], "n": [1, 2], "x": [1, 2]}
    )
    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer)
    good = message(key="z", ts=0, n=0, x=0.0)
    rows, malformed = decode([good, buffer.getvalue(), b"\xff\xff\xff\xffbroken", good])
    assert rows["key"].to_list() == ["z", "a", "b", "z"]
    assert rows[OFFSET].to_list() == [100, 101, 101, 103]  # an Arrow message's rows share it
    assert rows["ts"][1] == datetime(2024, 3, 1, tzinfo=UTC)
    assert malformed.select(OFFSET, "_hr_reason").rows() == [(102, "not_arrow")]


def test_an_arrow_message_missing_a_column_is_malformed() -> None:
    buffer = io.BytesIO()
    pl.DataFrame({"key": ["a"]}).write_ipc_stream(buffer)
    rows, malformed = decode([buffer.getvalue()])
    assert rows.is_empty()
    assert malformed["_hr_reason"].to_list() == ["missing_field"]


def test_encoded_rows_decode_to_the_same_frame() -> None:
    frame = sample_rows(50)
    values: list[bytes | None] = list(encode_json(frame))
    rows, malformed = decode(values, SAMPLE_SCHEMA)
    assert malformed.is_empty()
    assert rows.select(list(SAMPLE_SCHEMA)).equals(frame)


def test_keys_route_like_the_embedded_log() -> None:
    frame = pl.DataFrame({"user": ["a", "b", None, "a"], "n": [1, 2, 3, 4]})
    expected = [partition_of("a", 8), partition_of("b", 8), 0, partition_of("a", 8)]
    assert partitions_for(frame, ["user"], 8) == expected
    assert partitions_for(frame, [], 3, start=2) == [2, 0, 1, 2]
    two = partitions_for(frame, ["user", "n"], 8)
    assert two[0] == partition_of(("a", 1), 8)


def test_positions_must_match_the_messages() -> None:
    with pytest.raises(ValueError, match="one position per message"):
        decode_json([b"{}"], MessagePositions([0, 0], [1, 2]), SCHEMA)


def test_misnamed_columns_are_explained() -> None:
    with pytest.raises(StreamError, match="reserved"):
        decode([b"{}"], {PARTITION: pl.Int32()})
    with pytest.raises(StreamError, match=r"\['user'\].*fix key="):
        partitions_for(pl.DataFrame({"n": [1]}), ["user"], 4)


GOOD = st.builds(
    lambda key, n, x, ms: message(key=key, ts=ms, n=n, x=x),
    st.text(max_size=5),
    st.integers(-(2**31), 2**31 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 4_000_000_000_000),
)
BAD = st.one_of(
    st.binary(max_size=12),
    st.none(),
    st.just(b"[]"),
    st.builds(lambda n: message(key="k", ts=0, n=n, x=1.0), st.text(max_size=3)),
    st.builds(lambda: message(key="k", n=1, x=1.0)),
    st.builds(lambda x: message(key="k", ts=0, n=1, x=x), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), GOOD, BAD), max_size=40))
def test_nothing_is_dropped(messages: list[tuple[bool, bytes, bytes | None]]) -> None:
    values = [good if is_good else bad for is_good, good, bad in messages]
    rows, malformed = decode(values)
    assert rows.height + malformed.height == len(values)
    offsets = sorted([*rows[OFFSET].to_list(), *malformed[OFFSET].to_list()])
    assert offsets == list(range(100, 100 + len(values)))  # each message exactly once
    for is_good, offset in zip([m[0] for m in messages], range(100, 200), strict=False):
        if is_good:
            assert offset in rows[OFFSET].to_list()
