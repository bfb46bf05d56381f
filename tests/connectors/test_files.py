from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import polars as pl
import pyarrow as pa
import pytest

from headrace.connectors.base import Batch
from headrace.connectors.files import FileInfo, content_hash, list_files, read_file
from headrace.core.source import FileSource, files
from headrace.errors import SourceError

FRAME = pl.DataFrame({"id": [1, 2, 3], "name": ["ann", "bob", None]})


def zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return bytes(sink.getvalue().to_pybytes())


def read(path: Path, spec: FileSource | None = None, **kwargs: Any) -> Batch:
    spec = spec or files(str(path))
    [info] = list_files(spec, path.parent)
    return read_file(spec, info, **kwargs)


def rows(batch: Batch) -> list[tuple[Any, ...]]:
    return batch.data.select("id", "name", "_hr_line").rows()


@pytest.fixture
def memory_fs() -> Iterator[fsspec.AbstractFileSystem]:
    fs = fsspec.filesystem("memory")
    root = "/headrace-test"
    yield fs
    if fs.exists(root):
        fs.rm(root, recursive=True)


# -- listing -----------------------------------------------------------------------------------


def test_a_relative_file_resolves_against_the_base_dir(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    [info] = list_files(files("a.csv"), tmp_path)
    stat = (tmp_path / "a.csv").stat()
    assert info == FileInfo(str(tmp_path / "a.csv"), stat.st_size, stat.st_mtime)
    assert json.loads(json.dumps(info.key())) == {
        "path": str(tmp_path / "a.csv"),
        "size": stat.st_size,
        "mtime": stat.st_mtime,
    }


def test_a_directory_lists_every_file_below_it_but_hidden_ones(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "sub/c.csv", ".hidden.csv", "_SUCCESS", "_tmp/d.csv", ".git/e"):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_text("x\n1\n")
    found = [
        Path(i.path).relative_to(tmp_path / "data") for i in list_files(files("data"), tmp_path)
    ]
    assert found == [Path("a.csv"), Path("b.csv"), Path("sub/c.csv")]


def test_globs_match_like_the_shell(tmp_path: Path) -> None:
    for name in (
        "2024/jan.csv",
        "2024/feb.csv",
        "2025/jan.csv",
        "2025/_bad.csv",
        "x1.csv",
        "x22.csv",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n1\n")

    def names(pattern: str) -> list[str]:
        return [
            Path(i.path).relative_to(tmp_path).as_posix()
            for i in list_files(files(pattern), tmp_path)
        ]

    assert names("*/jan.csv") == ["2024/jan.csv", "2025/jan.csv"]
    assert names("**/*.csv") == [
        "2024/feb.csv",
        "2024/jan.csv",
        "2025/jan.csv",
        "x1.csv",
        "x22.csv",
    ]
    assert names("x?.csv") == ["x1.csv"]
    assert names("2025/_*.csv") == ["2025/_bad.csv"]
    assert names(str(tmp_path / "2024" / "*.csv")) == ["2024/feb.csv", "2024/jan.csv"]


def test_file_urls_are_local_paths(tmp_path: Path) -> None:
    (tmp_path / "a b.csv").write_text("x\n1\n")
    [info] = list_files(files((tmp_path / "a b.csv").as_uri()), Path("/elsewhere"))
    assert info.path == str(tmp_path / "a b.csv")
    assert not info.is_url
    with pytest.raises(SourceError, match="file:///absolute/path"):
        list_files(files("file://server/share/a.csv"), tmp_path)


def test_a_missing_path_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        list_files(files("nope/flights.csv"), tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "nope" / "flights.csv") in message
    assert "fix the path" in message


def test_a_glob_matching_nothing_and_an_empty_directory_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".keep").write_text("")
    with pytest.raises(SourceError, match=r"no file matches .*\*\.parquet"):
        list_files(files("*.parquet"), tmp_path)
    with pytest.raises(SourceError, match="holds no data files"):
        list_files(files("empty"), tmp_path)


def test_urls_go_through_fsspec(memory_fs: fsspec.AbstractFileSystem) -> None:
    memory_fs.pipe_file("/headrace-test/in/b.csv", b"id,name\n2,bob\n")
    memory_fs.pipe_file("/headrace-test/in/a.csv", b"id,name\n1,ann\n")
    memory_fs.pipe_file("/headrace-test/in/_SUCCESS", b"")
    memory_fs.pipe_file("/headrace-test/in/deep/c.csv", b"id,name\n3,cy\n")
    listed = list_files(files("memory://headrace-test/in"), Path("/"))
    assert [i.path for i in listed] == [
        "memory:///headrace-test/in/a.csv",
        "memory:///headrace-test/in/b.csv",
        "memory:///headrace-test/in/deep/c.csv",
    ]
    assert all(i.is_url and i.size == 14 and i.mtime > 0 for i in listed[:2])
    globbed = list_files(files("memory://headrace-test/in/*.csv"), Path("/"))
    assert [i.path.rsplit("/", 1)[1] for i in globbed] == ["a.csv", "b.csv"]
    batch = read_file(files("memory://headrace-test/in"), listed[0])
    assert batch.data.rows() == [(1, "ann", "memory:///headrace-test/in/a.csv", 2)]
    assert content_hash(listed[0]) == content_hash(listed[0])


def test_unusable_urls_are_source_errors(memory_fs: fsspec.AbstractFileSystem) -> None:
    with pytest.raises(SourceError, match=r"nope://x/y\.csv"):
        list_files(files("nope://x/y.csv"), Path("/"))
    with pytest.raises(SourceError, match=r"memory://headrace-test/missing\.csv"):
        list_files(files("memory://headrace-test/missing.csv"), Path("/"))


# -- hashing -----------------------------------------------------------------------------------


def test_content_hash_follows_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"x\n" * 1_000_000)
    [first] = list_files(files("a.csv"), tmp_path)
    digest = content_hash(first)
    assert len(digest) == 64
    os.utime(path, (1, 1))
    [touched] = list_files(files("a.csv"), tmp_path)
    assert touched.mtime != first.mtime
    assert content_hash(touched) == digest
    path.write_bytes(b"y\n" * 1_000_000)
    assert content_hash(touched) != digest


def test_content_hash_of_a_vanished_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="gone"):
        content_hash(FileInfo(str(tmp_path / "gone.csv"), 1, 1.0))


# -- formats -----------------------------------------------------------------------------------


def test_csv_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,ann\n2,bob\n3,\n")
    (tmp_path / "a.tsv").write_text("id\tname\n1\tann\n2\tbob\n3\tNA\n")
    expected = [(1, "ann", 2), (2, "bob", 3), (3, None, 4)]
    assert rows(read(tmp_path / "a.csv")) == expected
    assert rows(read(tmp_path / "a.tsv")) == expected
    assert read(tmp_path / "a.csv").data["_hr_source"].unique().to_list() == [
        str(tmp_path / "a.csv")
    ]


def test_contract_columns_are_read_typed_or_as_text(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name,when,extra\n1,ann,2024-01-01,2\n")
    columns = {"id": pl.Int64(), "name": None, "when": pl.Date()}
    batch = read(tmp_path / "a.csv", columns=columns)
    assert batch.data.schema["id"] == pl.Int64  # declared numbers: parsed by Polars directly
    assert batch.data.schema["when"] == pl.String  # the rest as text, for the contract to cast
    assert batch.data.schema["extra"] == pl.Int64
    (tmp_path / "b.csv").write_text("id,name,when,extra\n1,ann,2024-01-01,2\nx,bob,,3\n")
    batch = read(tmp_path / "b.csv", columns=columns)
    assert batch.data.schema["id"] == pl.String  # a value that is no number: all as text
    assert batch.data["id"].to_list() == ["1", "x"]
    missing = read(tmp_path / "a.csv", columns={"id": None, "nope": None})
    assert missing.data.height == 0
    assert missing.rejects["_hr_reason"].to_list() == ["header_mismatch"]


def test_parquet_and_ipc_number_rows(tmp_path: Path) -> None:
    FRAME.write_parquet(tmp_path / "a.parquet")
    FRAME.write_ipc(tmp_path / "a.arrow")
    FRAME.write_ipc_stream(tmp_path / "s.ipc")
    expected = [(1, "ann", 1), (2, "bob", 2), (3, None, 3)]
    for name in ("a.parquet", "a.arrow", "s.ipc"):
        batch = read(tmp_path / name)
        assert rows(batch) == expected, name
        assert batch.data.schema["id"] == pl.Int64


def test_json_array_and_single_object(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(FRAME.to_dicts()))
    (tmp_path / "one.json").write_text('{"id": 7, "name": "zed"}')
    (tmp_path / "empty.json").write_text("[]")
    assert rows(read(tmp_path / "a.json")) == [(1, "ann", 1), (2, "bob", 2), (3, None, 3)]
    assert rows(read(tmp_path / "one.json")) == [(7, "zed", 1)]
    assert read(tmp_path / "empty.json").records == 0


def test_json_that_is_not_objects_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "mixed.json").write_text('[{"id": 1, "name": "ann"}, 5, {"id": 2, "name": "bob"}]')
    batch = read(tmp_path / "mixed.json")
    assert rows(batch) == [(1, "ann", 1), (2, "bob", 3)]
    assert batch.rejects.select("_hr_line", "_hr_raw", "_hr_reason").rows() == [
        (2, "5", "malformed")
    ]
    (tmp_path / "broken.json").write_text('[{"id": 1},\n {"id": ]')
    broken = read(tmp_path / "broken.json")
    assert broken.data.height == 0
    assert broken.rejects.select("_hr_line", "_hr_reason").rows() == [(2, "malformed")]


def test_ndjson_lines_with_bad_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(
        b'{"id": 1, "name": "ann"}\n\n{"id": 2, "name": \n[1, 2]\n{"id": 3, "name": "\xff"}\n'
        b'{"id": 4, "name": "dan"}\r\n'
    )
    batch = read(tmp_path / "a.ndjson")
    assert rows(batch) == [(1, "ann", 1), (4, "dan", 6)]
    assert batch.rejects.select("_hr_line", "_hr_offset", "_hr_reason").rows() == [
        (3, 26, "malformed"),
        (4, 45, "malformed"),
        (5, 52, "encoding"),
    ]
    (tmp_path / "b.jsonl").write_text('{"id": 1, "name": "ann"}\n\n{"id": 2, "name": "bob"}\n')
    assert rows(read(tmp_path / "b.jsonl")) == [(1, "ann", 1), (2, "bob", 3)]


@pytest.mark.parametrize("suffix", [".gz", ".zst", ".zstd"])
def test_compressed_files(tmp_path: Path, suffix: str) -> None:
    pack = gzip.compress if suffix == ".gz" else zstd
    (tmp_path / f"a.csv{suffix}").write_bytes(pack(b"id,name\n1,ann\n2,\n"))
    (tmp_path / f"a.ndjson{suffix}").write_bytes(pack(b'{"id": 1, "name": "ann"}\n'))
    buffer = io.BytesIO()
    FRAME.write_parquet(buffer)
    (tmp_path / f"a.parquet{suffix}").write_bytes(pack(buffer.getvalue()))
    assert rows(read(tmp_path / f"a.csv{suffix}")) == [(1, "ann", 2), (2, None, 3)]
    assert rows(read(tmp_path / f"a.ndjson{suffix}")) == [(1, "ann", 1)]
    assert read(tmp_path / f"a.parquet{suffix}").data.height == 3


def test_compression_is_also_found_by_magic_bytes(tmp_path: Path) -> None:
    (tmp_path / "g.csv").write_bytes(gzip.compress(b"id,name\n1,ann\n"))
    (tmp_path / "z.csv").write_bytes(zstd(b"id,name\n1,ann\n"))
    assert rows(read(tmp_path / "g.csv")) == [(1, "ann", 2)]
    assert rows(read(tmp_path / "z.csv")) == [(1, "ann", 2)]


def test_files_that_are_not_what_they_say_are_one_reject(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(b"id,name\n1,ann\n")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(b"id,name\n1,ann\n")[:-6])
    (tmp_path / "c.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "d.arrow").write_bytes(b"ARROW1 but then garbage")
    for name in ("a.csv.gz", "b.csv.gz", "c.parquet", "d.arrow"):
        batch = read(tmp_path / name)
        assert batch.data.height == 0, name
        assert batch.rejects.select("_hr_line", "_hr_reason").rows() == [(None, "malformed")], name
        assert str(tmp_path / name) == batch.rejects["_hr_source"][0]


def test_empty_files_of_every_format_are_one_reject(tmp_path: Path) -> None:
    for name in ("a.csv", "a.parquet", "a.ndjson", "a.csv.gz"):
        (tmp_path / name).write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
        batch = read(tmp_path / name)
        assert batch.rejects["_hr_reason"].to_list() == ["empty_file"], name


def test_declared_format_wins_over_the_suffix(tmp_path: Path) -> None:
    (tmp_path / "export.dat").write_text("id;name\n1;ann\n")
    batch = read(
        tmp_path / "export.dat", files(str(tmp_path / "export.dat"), format="csv", delimiter=";")
    )
    assert rows(batch) == [(1, "ann", 2)]


def test_ndjson_fields_of_mixed_kinds_become_json_text(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_text('{"id": 1, "v": 1}\n{"id": 2, "v": {"x": 1}}\nnot json\n')
    batch = read(tmp_path / "a.ndjson")
    assert batch.data.select("id", "v", "_hr_line").rows() == [(1, "1", 1), (2, '{"x": 1}', 2)]
    assert batch.rejects["_hr_line"].to_list() == [3]
