from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.connectors.base import REJECT_REASONS, REJECT_SCHEMA, Batch
from headrace.connectors.csv import blocks as csv_blocks
from headrace.connectors.csv import parse_csv
from headrace.core.source import CsvOptions

ABC = {"a": None, "b": None, "c": None}


def parse(data: bytes, columns: dict[str, None] | None = None, **options: Any) -> Batch:
    return parse_csv(data, source="t.csv", options=CsvOptions(**options), columns=columns)


def rejects(batch: Batch) -> list[tuple[Any, ...]]:
    return batch.rejects.select("_hr_line", "_hr_reason", "_hr_raw").rows()


@pytest.fixture(params=["whole", "blocks"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test on the whole-file path and on the block path (tiny blocks)."""
    if request.param == "whole":
        yield "whole"
        return
    with mock.patch.object(csv_blocks, "BLOCK_BYTES", 8):
        yield "blocks"


def test_clean_file_infers_types_and_numbers_lines(mode: str) -> None:
    batch = parse(b"id,name,score\n1,ann,1.5\n2,bob,NA\n3,,2\n")
    assert batch.data.schema == pl.Schema(
        {
            "id": pl.Int64,
            "name": pl.String,
            "score": pl.Float64,
            "_hr_source": pl.String,
            "_hr_line": pl.Int64,
        }
    )
    assert batch.data.rows() == [
        (1, "ann", 1.5, "t.csv", 2),
        (2, "bob", None, "t.csv", 3),
        (3, None, 2.0, "t.csv", 4),
    ]
    assert batch.rejects.height == 0
    assert batch.rejects.schema == pl.Schema(REJECT_SCHEMA)


def test_contract_columns_are_read_as_text_and_extra_columns_kept() -> None:
    batch = parse(b"a,b,extra\n1,2.5,7\n", columns={"a": None, "b": None})
    assert batch.data.schema["a"] == pl.String
    assert batch.data.schema["b"] == pl.String
    assert batch.data.schema["extra"] == pl.Int64
    assert batch.data.select("a", "b", "extra").rows() == [("1", "2.5", 7)]


def test_records_with_more_or_fewer_fields_are_rejected(mode: str) -> None:
    data = b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n"
    batch = parse(data)
    assert batch.data.select("a", "_hr_line").rows() == [(1, 2), (10, 5)]
    found = batch.rejects.select("_hr_line", "_hr_offset", "_hr_raw", "_hr_reason", "_hr_detail")
    assert found.rows() == [
        (3, 12, "4,5", "field_count", "2 fields, expected 3"),
        (4, 16, "6,7,8,9", "field_count", "4 fields, expected 3"),
    ]
    assert batch.records == 4


def test_unclosed_quote_rejects_its_first_line_and_parsing_resumes_on_the_next(mode: str) -> None:
    data = b'a,b\n1,"never closed\n2,x\n3,y\n'
    batch = parse(data)
    assert batch.data.select("a", "b", "_hr_line").rows() == [(2, "x", 3), (3, "y", 4)]
    assert rejects(batch) == [(2, "unclosed_quote", '1,"never closed')]


def test_unclosed_quote_does_not_swallow_quoted_values_below_it(mode: str) -> None:
    data = b'a,b\n1,"open\n2,"two\nlines"\n3,"q""uote"\n'
    batch = parse(data)
    assert batch.data.select("a", "b", "_hr_line").rows() == [
        (2, "two\nlines", 3),
        (3, 'q"uote', 5),
    ]
    assert rejects(batch) == [(2, "unclosed_quote", '1,"open')]


def test_text_after_a_closing_quote_is_malformed(mode: str) -> None:
    batch = parse(b'a,b\n1,"x"y\n2,z\n')
    assert batch.data.select("a", "_hr_line").rows() == [(2, 3)]
    assert rejects(batch) == [(2, "malformed", '1,"x"y')]


def test_multi_line_values_keep_exact_lines_around_rejects(mode: str) -> None:
    data = b'a,b\n1,"one\ntwo\nthree"\n2\n3,"x,y"\n\n4,"\xff"\n5,"a\r\nb"\n6,end'
    batch = parse(data)
    assert batch.data.select("a", "b", "_hr_line").rows() == [
        (1, "one\ntwo\nthree", 2),
        (3, "x,y", 6),
        (5, "a\r\nb", 9),
        (6, "end", 11),
    ]
    assert rejects(batch) == [(5, "field_count", "2"), (8, "encoding", '4,"\\xff"')]


def test_invalid_utf8_rejects_that_line_only(mode: str) -> None:
    batch = parse(b"a,b\n1,caf\xc3\xa9\n2,caf\xe9\n3,ok\n")
    assert batch.data.select("a", "b", "_hr_line").rows() == [(1, "café", 2), (3, "ok", 4)]
    found = batch.rejects.select("_hr_line", "_hr_offset", "_hr_raw", "_hr_reason", "_hr_detail")
    assert found.rows() == [
        (3, 12, "2,caf\\xe9", "encoding", "byte 0xe9 at byte 6 of the line is not valid utf-8")
    ]


def test_declared_encoding_is_honoured(mode: str) -> None:
    batch = parse(b"a,b\n1,caf\xe9\n2,na\xefve\n", encoding="latin-1")
    assert batch.data.select("a", "b").rows() == [(1, "café"), (2, "naïve")]
    bad = parse(b"a,b\n1,ok\n2,\x81\n", encoding="cp1252")  # 0x81 is unassigned in cp1252
    assert bad.data.select("a").rows() == [(1,)]
    assert rejects(bad) == [(3, "encoding", "2,\\x81")]


def test_utf16_files_are_read() -> None:
    batch = parse("a,b\n1,é\n".encode("utf-16"), encoding="utf-16")
    assert batch.data.select("a", "b").rows() == [(1, "é")]


def test_a_utf8_bom_is_not_part_of_the_first_name() -> None:
    batch = parse(b"\xef\xbb\xbfa,b\n1,2\n")
    assert batch.data.select("a", "b").rows() == [(1, 2)]
    headless = parse(b"\xef\xbb\xbf1,2\n", has_header=False)
    assert headless.data.select("column_1", "column_2", "_hr_line").rows() == [(1, 2, 1)]


def test_an_empty_file_is_one_reject() -> None:
    batch = parse(b"", columns={"a": None})
    assert batch.rejects.select("_hr_line", "_hr_offset", "_hr_raw", "_hr_reason").rows() == [
        (None, 0, "", "empty_file")
    ]
    assert batch.data.height == 0
    assert batch.data.schema["a"] == pl.String
    assert parse(b"\n\n", skip_rows=0).rejects["_hr_reason"].to_list() == ["empty_file"]


def test_a_header_only_file_has_no_rows_and_no_rejects() -> None:
    for data in (b"a,b\n", b"a,b", b"a,b\r\n\r\n"):
        batch = parse(data)
        assert batch.data.columns == ["a", "b", "_hr_source", "_hr_line"]
        assert batch.records == 0


def test_a_header_without_the_contract_columns_rejects_every_record(mode: str) -> None:
    batch = parse(b"a,x\n1,2\n3\n4,5\n", columns={"a": None, "b": None, "c": None})
    assert batch.data.height == 0
    assert rejects(batch) == [
        (2, "header_mismatch", "1,2"),
        (3, "header_mismatch", "3"),
        (4, "header_mismatch", "4,5"),
    ]
    detail = batch.rejects["_hr_detail"][0]
    assert "b, c" in detail
    assert "it has a, x" in detail


def test_null_values_skip_rows_and_custom_layout(mode: str) -> None:
    data = b"exported by tool\nversion 2\nx;y\n'a;b';-\n'it''s';'-'\n;q\n"
    batch = parse(
        data,
        columns={"x": None, "y": None},
        delimiter=";",
        quote_char="'",
        null_values=["-", ""],
        skip_rows=2,
    )
    assert batch.data.select("x", "y", "_hr_line").rows() == [
        ("a;b", None, 4),
        ("it's", None, 5),
        (None, "q", 6),
    ]


def test_no_header_with_column_names(mode: str) -> None:
    batch = parse(b"1,2\n3,4,5\n6,7\n", has_header=False, column_names=["p", "q"])
    assert batch.data.select("p", "q", "_hr_line").rows() == [(1, 2, 1), (6, 7, 3)]
    assert rejects(batch) == [(2, "field_count", "3,4,5")]
    default = parse(b"1,2\n", has_header=False)
    assert default.data.columns[:2] == ["column_1", "column_2"]


def test_no_quote_char_keeps_quotes_as_text(mode: str) -> None:
    batch = parse(b'a,b\n1,"x\n2,y"\n', quote_char=None)
    assert batch.data.select("b").to_series().to_list() == ['"x', 'y"']


def test_tab_delimiter_and_crlf_lines(mode: str) -> None:
    batch = parse(b'a\tb\r\n1\tx y\r\n2\t"p\tq"\r\n', delimiter="\t")
    assert batch.data.select("a", "b", "_hr_line").rows() == [(1, "x y", 2), (2, "p\tq", 3)]


def test_blank_lines_are_not_records(mode: str) -> None:
    batch = parse(b"a,b\n\n1,2\n\n\n3,4\n\n\n")
    assert batch.data.select("a", "_hr_line").rows() == [(1, 3), (3, 6)]
    assert batch.rejects.height == 0


def test_single_column_nulls_and_blank_lines(mode: str) -> None:
    batch = parse(b"a\n1\nNA\n\n2\n")
    assert batch.data.select("a", "_hr_line").rows() == [(1, 2), (None, 3), (2, 5)]


def test_duplicate_header_names_are_renamed_like_polars() -> None:
    batch = parse(b"a,a,b\n1,2,3\n")
    assert batch.data.columns[:3] == ["a", "a_duplicated_0", "b"]


def test_types_are_inferred_over_all_rows() -> None:
    rows = b"".join(b"%d\n" % i for i in range(20_000))
    batch = parse(b"n\n" + rows + b"0.5\n")
    assert batch.data.schema["n"] == pl.Float64
    assert batch.data.height == 20_001
    assert batch.data["_hr_line"][-1] == 20_002


def test_blocks_fall_back_to_text_when_a_later_value_does_not_fit() -> None:
    with mock.patch.object(csv_blocks, "BLOCK_BYTES", 8):
        batch = parse(b"a,b\n1,2\n3,4\nx,y,z\n5,six\n6,1.5\n")
    assert batch.data.schema["a"] == pl.Int64
    assert batch.data.schema["b"] == pl.String
    assert batch.data.select("a", "b", "_hr_line").rows() == [
        (1, "2", 2),
        (3, "4", 3),
        (5, "six", 5),
        (6, "1.5", 6),
    ]
    assert rejects(batch) == [(4, "field_count", "x,y,z")]


def test_rows_parsed_line_by_line_get_the_types_polars_inferred() -> None:
    with mock.patch.object(csv_blocks, "BLOCK_BYTES", 9):  # lines 2-3 (dirty), then line 4
        batch = parse(b"a,b,c\nTrue,1,x\ny\nFALSE,2,NA\n")
    assert batch.data.select("a", "b", "c", "_hr_line").rows() == [
        (True, 1, "x", 2),
        (False, 2, None, 4),
    ]
    assert batch.data.schema["a"] == pl.Boolean


def test_a_large_file_with_a_few_bad_lines_loses_nothing() -> None:
    good = [b"%d,name %d,%d.5" % (i, i, i) for i in range(60_000)]
    lines = list(good)
    lines[100] = b"bad,line"
    lines[30_000] = b'1,"unclosed,2'
    lines[59_000] = b"9,\xff\xfe,1"
    data = b"id,name,score\n" + b"\n".join(lines) + b"\n"
    batch = parse(data)
    assert batch.records == 60_000
    assert rejects(batch) == [
        (102, "field_count", "bad,line"),
        (30_002, "unclosed_quote", '1,"unclosed,2'),
        (59_002, "encoding", "9,\\xff\\xfe,1"),
    ]
    assert batch.data.schema["id"] == pl.Int64
    lines_of = dict(batch.data.select("id", "_hr_line").iter_rows())
    assert lines_of[101] == 103
    assert lines_of[59_999] == 60_001


def test_rejects_use_only_known_reasons() -> None:
    batch = parse(b'a,b\n1\n2,"x\n\xff,1\n3,"a"b\n')
    assert set(batch.rejects["_hr_reason"]) <= set(REJECT_REASONS)


# -- property: rows + rejects account for every record, at the right line --------------------


@dataclass(frozen=True)
class Good:
    values: tuple[str, str, str]


@dataclass(frozen=True)
class Bad:
    text: bytes
    reason: str


def _quoted(value: str) -> str:
    if any(char in value for char in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


# A quoted value starts with a plain character, so an unclosed quote above it cannot end at its
# opening quote: the one reading of each line is the one the test expects.
plain = st.sampled_from("a1é")
values = st.one_of(
    st.just(""),
    st.just("NA"),
    st.builds(lambda head, tail: head + tail, plain, st.text(alphabet='a1 ,"\né', max_size=6)),
)
goods = st.builds(lambda v: Good(tuple(v)), st.lists(values, min_size=3, max_size=3))
bads = st.one_of(
    st.builds(lambda n: Bad(b",".join([b"x"] * n), "field_count"), st.sampled_from([1, 2, 4, 5])),
    st.just(Bad(b'x,"never closed,y', "unclosed_quote")),
    st.just(Bad(b"x,\xff\xfe,y", "encoding")),
    st.just(Bad(b"", "blank")),
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.one_of(goods, bads), max_size=25), crlf=st.booleans())
def test_every_record_is_a_row_or_a_reject_on_its_line(lines: list[Good | Bad], crlf: bool) -> None:
    newline = b"\r\n" if crlf else b"\n"
    chunks = [b"a,b,c"]
    expected_rows, expected_rejects = [], []
    line = 2
    for item in lines:
        if isinstance(item, Good):
            text = ",".join(_quoted(v) for v in item.values).encode()
            values = tuple(None if v in ("", "NA") else v for v in item.values)
            expected_rows.append((*values, line))
        else:
            text = item.text
            if item.reason != "blank":
                expected_rejects.append((line, item.reason))
        chunks.append(text)
        line += text.count(b"\n") + 1
    data = newline.join(chunks) + newline
    for block_bytes in (csv_blocks.BLOCK_BYTES, 16):
        with mock.patch.object(csv_blocks, "BLOCK_BYTES", block_bytes):
            batch = parse_csv(data, source="p.csv", options=CsvOptions(), columns=ABC)
        assert batch.data.select("a", "b", "c", "_hr_line").rows() == expected_rows
        assert batch.rejects.select("_hr_line", "_hr_reason").rows() == expected_rejects
        assert batch.records == len(expected_rows) + len(expected_rejects)
