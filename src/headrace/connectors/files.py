r"""Files as a source: find them (:func:`list_files`), fingerprint them, read them into a Batch.

A :class:`~headrace.core.source.FileSource` path is one file, a directory (every file under it),
a glob (``*``, ``**``, ``?``, ``[...]``) or a URL. Local paths and ``file://`` URLs are read from
disk; any other URL goes through fsspec (``s3://``, ``gs://``, ``az://``, ``memory://``...),
which needs that protocol's package installed (``s3fs``, ``gcsfs``, ``adlfs``...).

Formats (declared, or from each file's suffix): ``csv``, ``tsv``, ``parquet``, ``json`` (an
array of objects, or one object), ``ndjson`` and ``ipc`` (Arrow IPC file or stream). A
``.gz``, ``.zst`` or ``.zstd`` file, or one that starts with the gzip or zstd magic bytes, is
decompressed first; its positions are those of the decompressed text.

Every row gets ``_hr_source`` (the file's path or URL) and ``_hr_line``: the physical line its
record starts on in CSV, TSV and NDJSON, the 1-based row number in the other formats. What does
not parse is a reject (:data:`~headrace.connectors.base.REJECT_SCHEMA`), never an exception: a
bad line in a text file, or a whole binary file that is not what its format says.

Example:
    >>> import tempfile
    >>> from headrace.core.source import files
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.csv").write_text("id,name\n1,ann\n2,bob,extra\n")
    >>> [info] = list_files(files("a.csv"), folder)
    >>> batch = read_file(files("a.csv"), info)
    >>> batch.data.select("id", "name", "_hr_line").rows()
    [(1, 'ann', 2)]
    >>> batch.rejects.select("_hr_line", "_hr_reason").rows()
    [(3, 'field_count')]

"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import io
import json
import mmap
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl

from headrace.connectors.base import LINE, REJECT_SCHEMA, SOURCE, Batch, empty_rejects
from headrace.connectors.csv import Buffer, Reject, parse_csv
from headrace.core.source import FileSource
from headrace.errors import SourceError

__all__ = ["FileInfo", "content_hash", "list_files", "read_file"]

_GLOB_CHARS = frozenset("*?[")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_HASH_CHUNK = 1 << 20
_POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError)


@dataclass(frozen=True)
class FileInfo:
    """One file of a source: where it is, how big, when it last changed.

    ``path`` is an absolute local path or a URL; ``mtime`` is in seconds since the epoch (0.0
    when the store does not say).
    """

    path: str
    size: int
    mtime: float

    def key(self) -> dict[str, Any]:
        """JSON-ready identity of this version of the file.

        >>> FileInfo("/data/a.csv", 10, 1.5).key()
        {'path': '/data/a.csv', 'size': 10, 'mtime': 1.5}
        """
        return {"path": self.path, "size": self.size, "mtime": self.mtime}

    @property
    def is_url(self) -> bool:
        """True for a file behind a URL (read through fsspec)."""
        return _is_url(self.path)


# -- listing -----------------------------------------------------------------------------------


def list_files(spec: FileSource, base_dir: Path) -> list[FileInfo]:
    """The files ``spec.path`` names, sorted by path.

    A relative path starts at ``base_dir``. In a directory, and in what a glob matches, names
    that start with ``.`` or ``_`` (``.DS_Store``, ``_SUCCESS``) are skipped, at any depth,
    unless the glob part that matches them starts with that character too.

    Raises:
        SourceError: nothing is there, or the URL's protocol cannot be used.

    """
    raw = spec.path
    if _is_url(raw):
        parsed = urlparse(raw)
        if parsed.scheme.lower() != "file":
            return _list_remote(raw)
        if parsed.netloc not in ("", "localhost"):
            msg = (
                f"file source {raw!r}: a file URL names a local path, not a host "
                f"({parsed.netloc!r}); write file:///absolute/path"
            )
            raise SourceError(msg)
        local = Path(unquote(parsed.path))
    else:
        local = Path(raw).expanduser()
        if not local.is_absolute():
            local = base_dir / local
    return _list_local(raw, local, base_dir)


def _is_url(path: str) -> bool:
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


def _has_glob(path: str) -> bool:
    return any(char in _GLOB_CHARS for char in path)


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _visible(parts: tuple[str, ...], pattern: tuple[str, ...] = ()) -> bool:
    """No part hidden, unless a pattern part that starts with its first character matches it."""
    return all(
        not _is_hidden(part)
        or any(p[:1] == part[:1] and fnmatch.fnmatchcase(part, p) for p in pattern)
        for part in parts
    )


def _list_local(raw: str, path: Path, base_dir: Path) -> list[FileInfo]:
    where = f"file source {raw!r}"
    if _has_glob(str(path)):
        root = Path(path.anchor)
        pattern: list[str] = []
        for part in path.parts[1:] if path.anchor else path.parts:
            if pattern or _has_glob(part):
                pattern.append(part)
            else:
                root = root / part
        matches = glob.glob(str(path), recursive=True, include_hidden=True)
        found = [
            Path(m)
            for m in matches
            if os.path.isfile(m) and _visible(Path(m).relative_to(root).parts, tuple(pattern))
        ]
        if not found:
            msg = (
                f"{where}: no file matches {path} (relative paths start at {base_dir}); "
                "check the pattern, or that the files are there"
            )
            raise SourceError(msg)
    elif path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and _visible(p.relative_to(path).parts)]
        if not found:
            msg = (
                f"{where}: the directory {path} holds no data files (names starting with '.' "
                "or '_' are skipped); put the files there or fix the path"
            )
            raise SourceError(msg)
    elif path.is_file():
        found = [path]
    else:
        msg = (
            f"{where}: no such file or directory {path} (relative paths start at {base_dir}); "
            "fix the path or create the file"
        )
        raise SourceError(msg)
    infos = []
    for file in found:
        stat = file.stat()
        infos.append(FileInfo(str(file.absolute()), stat.st_size, stat.st_mtime))
    return sorted(infos, key=lambda info: info.path)


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path inside it."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        msg = f"cannot read {url}: {exc} (the fsspec package for this protocol is missing)"
        raise SourceError(msg) from exc
    except ValueError as exc:
        msg = f"cannot read {url}: {exc}; use a local path or a URL fsspec knows (s3://, gs://...)"
        raise SourceError(msg) from exc
    return fs, str(path)


def _list_remote(url: str) -> list[FileInfo]:
    fs, root = _filesystem(url)
    where = f"file source {url!r}"
    try:
        if _has_glob(root):
            pattern = tuple(root.split("/"))
            literal = root[: min(root.find(c) for c in _GLOB_CHARS if c in root)]
            base = literal.rsplit("/", 1)[0]
            entries = {
                name: info
                for name, info in fs.glob(root, detail=True).items()
                if _visible(tuple(_relative(name, base).split("/")), pattern)
            }
        elif fs.isdir(root):
            entries = {
                name: info
                for name, info in fs.find(root, detail=True).items()
                if _visible(tuple(_relative(name, root).split("/")))
            }
        else:
            entries = {root: fs.info(root)}
    except FileNotFoundError as exc:
        msg = f"{where}: nothing at {url}; fix the path or check that the object exists"
        raise SourceError(msg) from exc
    except OSError as exc:
        msg = f"{where}: cannot list {url}: {exc}; check the URL and the credentials"
        raise SourceError(msg) from exc
    files = {name: info for name, info in entries.items() if info.get("type", "file") == "file"}
    if not files:
        msg = f"{where}: no file at {url}; check the pattern, or that the objects are there"
        raise SourceError(msg)
    infos = [
        FileInfo(fs.unstrip_protocol(name), int(info.get("size") or 0), _mtime(info))
        for name, info in files.items()
    ]
    return sorted(infos, key=lambda info: info.path)


def _relative(name: str, base: str) -> str:
    name, base = name.strip("/"), base.strip("/")
    return name[len(base) :].lstrip("/") if base and name.startswith(base) else name


def _mtime(info: Mapping[str, Any]) -> float:
    """Modification time from an fsspec info dict (each store names it differently)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


# -- hashing -----------------------------------------------------------------------------------


def content_hash(info: FileInfo) -> str:
    """BLAKE2b (256-bit, hex) of the file's bytes, read in 1 MiB chunks.

    Raises:
        SourceError: the file cannot be read (any more).

    """
    digest = hashlib.blake2b(digest_size=32)
    with _open(info) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _open(info: FileInfo) -> Iterator[io.BufferedIOBase]:
    try:
        if info.is_url:
            fs, path = _filesystem(info.path)
            with fs.open(path, "rb") as handle:
                yield handle
        else:
            with open(info.path, "rb") as handle:
                yield handle
    except FileNotFoundError as exc:
        msg = f"cannot read {info.path}: it is gone; restore it or list the files again"
        raise SourceError(msg) from exc
    except OSError as exc:
        msg = f"cannot read {info.path}: {exc}; check that it exists and is readable"
        raise SourceError(msg) from exc


# -- reading -----------------------------------------------------------------------------------


def read_file(
    spec: FileSource,
    info: FileInfo,
    *,
    columns: Mapping[str, pl.DataType | None] | None = None,
) -> Batch:
    """Read one file of ``spec`` into rows (with ``_hr_source``, ``_hr_line``) and rejects.

    ``columns`` is the node's contract (name -> declared dtype or None). CSV and TSV read those
    columns as String, for the contract to cast (quarantining values that do not parse), and
    reject every record when the header lacks one of them (``header_mismatch``). Without
    ``columns`` types are inferred. Other formats keep their own types.

    Raises:
        SourceError: the file cannot be read at all (gone, unreadable).
        ConfigError: its format cannot be told from its suffix.

    """
    fmt = spec.format_of(info.path)
    with _content(info) as (buffer, local):
        if isinstance(buffer, str):
            return _whole_file_reject(info.path, "malformed", buffer)
        if len(buffer) == 0:
            return _whole_file_reject(info.path, "empty_file", "the file is empty (0 bytes)")
        if fmt in ("csv", "tsv"):
            options = spec.csv
            if fmt == "tsv" and options.delimiter == ",":
                options = replace(options, delimiter="\t")
            return parse_csv(buffer, source=info.path, options=options, columns=columns, path=local)
        if fmt == "ndjson":
            return _read_ndjson(bytes(buffer), info.path)
        if fmt == "json":
            return _read_json(bytes(buffer), info.path)
        if fmt == "parquet":
            return _read_binary(pl.read_parquet, buffer, local, info.path, "Parquet")
        return _read_binary(_read_ipc, buffer, local, info.path, "Arrow IPC")


@contextmanager
def _content(info: FileInfo) -> Iterator[tuple[Buffer | str, Path | None]]:
    """The file's bytes, decompressed, and its local path when the bytes are the file's own.

    A plain local file is memory-mapped (no copy). When decompression fails the content is a
    string: what went wrong.
    """
    if info.is_url:
        yield _decompressed(_fetched(info), info.path), None
        return
    with _open(info) as handle:
        head = handle.read(4)
        compressed = _compression(info.path, head) is not None
        mapped = None if compressed or not head else _mapped(handle)
        data = b"" if mapped is not None else head + handle.read()
    if mapped is None:
        yield (_decompressed(data, info.path), None) if compressed else (data, Path(info.path))
        return
    try:
        yield mapped, Path(info.path)
    finally:
        with suppress(BufferError):  # a view still alive: the GC unmaps it later
            mapped.close()


def _mapped(handle: io.BufferedIOBase) -> mmap.mmap | None:
    try:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # a file system that cannot map: the caller reads instead
        return None


def _fetched(info: FileInfo) -> bytes:
    fs, path = _filesystem(info.path)
    try:
        return bytes(fs.cat_file(path))
    except OSError as exc:
        msg = f"cannot read {info.path}: {exc}; check that it exists and is readable"
        raise SourceError(msg) from exc


def _compression(path: str, head: bytes) -> str | None:
    name = path.lower()
    if name.endswith(".gz") or head.startswith(_GZIP_MAGIC):
        return "gzip"
    if name.endswith((".zst", ".zstd")) or head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return None


def _decompressed(data: bytes, path: str) -> bytes | str:
    kind = _compression(path, data[:4])
    if kind is None:
        return data
    try:
        if kind == "gzip":
            return gzip.decompress(data)
        import pyarrow as pa

        stream = pa.CompressedInputStream(pa.BufferReader(data), "zstd")
        return bytes(stream.read())
    except (OSError, EOFError, zlib.error) as exc:
        return (
            f"not valid {kind} data ({exc}); re-create the file, or drop the "
            f"{'.gz' if kind == 'gzip' else '.zst'} suffix if it is not compressed"
        )


def _whole_file_reject(source: str, reason: str, detail: str) -> Batch:
    reject: Reject = (source, None, 0, "", reason, detail)
    return Batch(_positioned(pl.DataFrame(), source, 0), _reject_frame([reject]))


def _reject_frame(rows: list[Reject]) -> pl.DataFrame:
    if not rows:
        return empty_rejects()
    return pl.DataFrame(rows, schema=dict(REJECT_SCHEMA), orient="row")


def _positioned(frame: pl.DataFrame, source: str, first: int = 1) -> pl.DataFrame:
    """``frame`` with ``_hr_source`` and ``_hr_line`` = row number from ``first``."""
    return frame.with_columns(
        pl.lit(source, dtype=pl.String).alias(SOURCE),
        pl.int_range(first, first + frame.height, dtype=pl.Int64).alias(LINE),
    )


def _read_ipc(source: str | io.BytesIO) -> pl.DataFrame:
    if isinstance(source, str):
        with open(source, "rb") as handle:
            is_file = handle.read(6) == b"ARROW1"
    else:
        is_file = source.getvalue()[:6] == b"ARROW1"
    if is_file:
        return pl.read_ipc(source)
    return pl.read_ipc_stream(source)


def _read_binary(
    reader: Callable[[Any], pl.DataFrame],
    buffer: Buffer,
    local: Path | None,
    source: str,
    kind: str,
) -> Batch:
    """A Parquet or IPC file; one ``malformed`` reject when it is not one."""
    try:
        frame = reader(str(local) if local is not None else io.BytesIO(bytes(buffer)))
    except _POLARS_ERRORS as exc:
        detail = f"not a readable {kind} file ({exc}); re-export it or declare its format="
        return _whole_file_reject(source, "malformed", detail)
    return Batch(_positioned(frame, source))


def _read_ndjson(data: bytes, source: str) -> Batch:
    """NDJSON: an object per line; a line that is not one is a ``malformed`` reject."""
    try:
        frame = pl.read_ndjson(data)
    except _POLARS_ERRORS:
        return _read_ndjson_lines(data, source)
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if frame.height == lines:
        return Batch(_positioned(frame, source))
    numbers = [n for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    if len(numbers) != frame.height:  # pragma: no cover - Polars skips only blank lines
        return _read_ndjson_lines(data, source)
    return Batch(_with_lines(frame, source, numbers))


def _read_ndjson_lines(data: bytes, source: str) -> Batch:
    """The line-exact NDJSON reader: good lines are read by Polars as one text, in order."""
    good: list[bytes] = []
    numbers: list[int] = []
    rejects: list[Reject] = []
    offset = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        raw = line.removesuffix(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            detail = f"byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} is not valid UTF-8"
            raw_text = raw.decode("utf-8", errors="backslashreplace")
            rejects.append((source, number, start, raw_text, "encoding", detail))
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            rejects.append((source, number, start, text, "malformed", f"invalid JSON: {exc}"))
            continue
        if not isinstance(value, dict):
            detail = f"a JSON {type(value).__name__}, not an object"
            rejects.append((source, number, start, text, "malformed", detail))
            continue
        good.append(raw)
        numbers.append(number)
    frame = _frame_of_objects(good)
    return Batch(_with_lines(frame, source, numbers), _reject_frame(rejects))


def _frame_of_objects(lines: list[bytes]) -> pl.DataFrame:
    """One row per JSON object; a field whose values mix kinds (1 and {...}) becomes JSON text."""
    if not lines:
        return pl.DataFrame()
    try:
        return pl.read_ndjson(b"\n".join(lines), infer_schema_length=None)
    except _POLARS_ERRORS:
        objects = [json.loads(line) for line in lines]
    names = list(dict.fromkeys(name for item in objects for name in item))
    columns = []
    for name in names:
        values = [item.get(name) for item in objects]
        try:
            columns.append(pl.Series(name, values))
        except (TypeError, ValueError, *_POLARS_ERRORS):
            text = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            columns.append(pl.Series(name, text, dtype=pl.String))
    return pl.DataFrame(columns)


def _with_lines(frame: pl.DataFrame, source: str, numbers: list[int]) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(source, dtype=pl.String).alias(SOURCE), pl.Series(LINE, numbers, dtype=pl.Int64)
    )


def _read_json(data: bytes, source: str) -> Batch:
    """JSON: an array of objects (row number = position in it), or a single object."""
    stripped = data.lstrip()
    single = stripped.startswith(b"{")
    try:
        frame = pl.read_json(b"[" + data + b"]" if single else data)
    except _POLARS_ERRORS:
        return _read_json_values(data, source)
    return Batch(_positioned(frame, source))


def _read_json_values(data: bytes, source: str) -> Batch:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"bytes {exc.start}-{exc.end} are not valid UTF-8 (JSON must be UTF-8)"
        raw = data.decode("utf-8", errors="backslashreplace")
        reject: Reject = (source, None, exc.start, raw, "encoding", detail)
        return Batch(_positioned(pl.DataFrame(), source), _reject_frame([reject]))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        reject = (source, exc.lineno, len(text[: exc.pos].encode()), text, "malformed", detail)
        return Batch(_positioned(pl.DataFrame(), source), _reject_frame([reject]))
    values = value if isinstance(value, list) else [value]
    good: list[bytes] = []
    numbers: list[int] = []
    rejects: list[Reject] = []
    for number, item in enumerate(values, 1):
        if isinstance(item, dict):
            good.append(json.dumps(item).encode())
            numbers.append(number)
        else:
            detail = f"element {number} is a JSON {type(item).__name__}, not an object"
            rejects.append((source, number, 0, json.dumps(item), "malformed", detail))
    frame = _frame_of_objects(good)
    return Batch(_with_lines(frame, source, numbers), _reject_frame(rejects))
