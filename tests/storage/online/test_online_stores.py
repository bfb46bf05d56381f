"""One contract suite for every online store backend: SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from headrace.errors import OnlineStoreError
from headrace.storage.online.base import (
    OnlineEntry,
    OnlineRows,
    OnlineStore,
    OnlineTable,
    encode_key,
)
from headrace.storage.online.redis import RedisOnlineStore
from headrace.storage.online.sql import PostgresOnlineStore, SqliteOnlineStore

KINDS = OnlineTable("kinds", 1, ("f", "i", "b", "s"), ("float", "int", "bool", "str"))
TEXT = OnlineTable("text", 1, ("v",), ("str",))
OTHER = OnlineTable("text", 2, ("v",), ("str",))
TABLES = (KINDS, TEXT, OTHER)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], OnlineStore]:
    """Opens a store of one backend; every store it opens sees the same (empty) location."""
    if request.param == "sqlite":
        return lambda: SqliteOnlineStore(tmp_path / "online.db")
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return lambda: PostgresOnlineStore(url)
    redis_url: str = request.getfixturevalue("redis_url")
    prefix = f"headrace_test_{secrets.token_hex(4)}"
    return lambda: RedisOnlineStore(redis_url, prefix=prefix)


@pytest.fixture
def store(open_store: Callable[[], OnlineStore]) -> Iterator[OnlineStore]:
    """An empty online store; its tables are dropped afterwards."""
    opened = open_store()
    try:
        yield opened
    finally:
        opened.drop(TABLES)
        opened.close()


def batch(*entries: tuple[str, int, int | None, tuple[object, ...]]) -> OnlineRows:
    """Rows from ``(key, event_us, created_us, values)`` tuples."""
    return OnlineRows(
        keys=[key for key, _, _, _ in entries],
        event_us=[event for _, event, _, _ in entries],
        created_us=[created for _, _, created, _ in entries],
        values=[values for _, _, _, values in entries],  # type: ignore[misc]
    )


def text_rows(stamps: list[tuple[str, int, int | None]]) -> OnlineRows:
    """Rows of TEXT whose value is derived from the stamp, so equal stamps mean equal entries."""
    return batch(
        *((key, event, created, (f"{key}|{event}|{created}",)) for key, event, created in stamps)
    )


def test_roundtrip_of_every_kind_with_none_and_unicode_keys(store: OnlineStore) -> None:
    zurich, tokyo, quote = encode_key(["Zürich"]), encode_key(["東京"]), encode_key(['a"b\\c'])
    written = batch(
        (zurich, 1_700_000_000_000_000, None, (1.5, -(2**62), True, "grüße 🚆")),
        (tokyo, 1_700_000_000_000_001, 7, (None, None, None, None)),
        (quote, 3, 4, (-0.25, 0, False, "")),
    )
    assert store.write(KINDS, written) == 3
    entries = store.read(KINDS, [tokyo, zurich, quote])
    assert entries == [
        OnlineEntry(1_700_000_000_000_001, 7, (None, None, None, None)),
        OnlineEntry(1_700_000_000_000_000, None, (1.5, -(2**62), True, "grüße 🚆")),
        OnlineEntry(3, 4, (-0.25, 0, False, "")),
    ]
    assert [type(value) for value in entries[1].values] == [float, int, bool, str]  # type: ignore[union-attr]
    assert type(entries[2].values[2]) is bool  # type: ignore[union-attr]


def test_composite_keys_are_distinct_entities(store: OnlineStore) -> None:
    keys = [encode_key(["JFK", 2013]), encode_key(["JFK", "2013"]), encode_key(["JFK", 2014])]
    store.write(TEXT, batch(*((key, 1, None, (key,)) for key in keys)))
    assert [entry.values if entry else None for entry in store.read(TEXT, keys)] == [
        (key,) for key in keys
    ]
    assert store.read(TEXT, [encode_key(["JFK"]), encode_key([2013, "JFK"])]) == [None, None]


def test_an_older_event_never_overwrites_a_newer_one(store: OnlineStore) -> None:
    store.write(TEXT, text_rows([("a", 10, 5), ("b", 10, None)]))
    assert store.write(TEXT, text_rows([("a", 9, 99), ("b", 9, None)])) == 0
    assert store.read(TEXT, ["a", "b"]) == [
        OnlineEntry(10, 5, ("a|10|5",)),
        OnlineEntry(10, None, ("b|10|None",)),
    ]


def test_equal_event_with_a_larger_created_time_wins(store: OnlineStore) -> None:
    store.write(TEXT, text_rows([("a", 10, None), ("b", 10, 5)]))
    assert store.write(TEXT, text_rows([("a", 10, 0), ("b", 10, 4), ("b", 10, None)])) == 1
    assert store.read(TEXT, ["a", "b"]) == [
        OnlineEntry(10, 0, ("a|10|0",)),
        OnlineEntry(10, 5, ("b|10|5",)),
    ]


def test_replaying_a_batch_changes_nothing(store: OnlineStore) -> None:
    rows = text_rows([("a", 1, None), ("b", 2, 3), ("a", 5, None), ("c", 4, 1), ("a", 2, 9)])
    store.write(TEXT, rows)
    before = store.read(TEXT, ["a", "b", "c"])
    store.write(TEXT, rows)
    assert store.read(TEXT, ["a", "b", "c"]) == before
    assert before[0] == OnlineEntry(5, None, ("a|5|None",))


def test_unknown_keys_and_tables_read_as_none(store: OnlineStore) -> None:
    assert store.read(TEXT, ["nobody"]) == [None]
    assert store.read(TEXT, []) == []
    store.write(TEXT, text_rows([("a", 1, None)]))
    assert store.read(TEXT, ["x", "a", "x"]) == [None, OnlineEntry(1, None, ("a|1|None",)), None]
    assert store.read(OTHER, ["a"]) == [None]  # another version is another table


def test_many_keys_come_back_in_the_order_asked(store: OnlineStore) -> None:
    keys = [encode_key([i]) for i in range(2_500)]  # over SQLite's 900 and Redis' 1000 per call
    assert store.write(TEXT, text_rows([(key, 1, None) for key in keys])) == len(keys)
    asked = [*reversed(keys), "missing"]
    entries = store.read(TEXT, asked)
    assert entries[-1] is None
    assert [entry.values[0] for entry in entries[:-1]] == [  # type: ignore[union-attr]
        f"{key}|1|None" for key in reversed(keys)
    ]


def test_drop_removes_entries_and_the_table_comes_back_on_write(store: OnlineStore) -> None:
    store.write(TEXT, text_rows([("a", 1, None)]))
    store.write(OTHER, text_rows([("a", 1, None)]))
    store.drop([TEXT])
    assert store.read(TEXT, ["a"]) == [None]
    assert store.read(OTHER, ["a"]) == [OnlineEntry(1, None, ("a|1|None",))]
    store.write(TEXT, text_rows([("a", 0, None)]))
    assert store.read(TEXT, ["a"]) == [OnlineEntry(0, None, ("a|0|None",))]
    store.drop([TEXT, TEXT])


def rank(stamp: tuple[int, int | None]) -> tuple[int, int]:
    """The order the contract defines: event time, then created time with None as -1."""
    return stamp[0], -1 if stamp[1] is None else stamp[1]


stamps = st.tuples(
    st.sampled_from(["a", "b", "c"]), st.integers(0, 4), st.none() | st.integers(0, 2)
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(stamps, min_size=1, max_size=6), min_size=1, max_size=5),
    data=st.data(),
)
def test_batches_in_any_order_end_in_the_greatest_stamp_per_key(
    store: OnlineStore, batches: list[list[tuple[str, int, int | None]]], data: st.DataObject
) -> None:
    store.drop([TEXT])
    for index in data.draw(st.permutations(range(len(batches)))):
        store.write(TEXT, text_rows(batches[index]))
    best: dict[str, tuple[int, int | None]] = {}
    for key, event, created in (stamp for rows in batches for stamp in rows):
        if key not in best or rank((event, created)) >= rank(best[key]):
            best[key] = (event, created)
    expected = [
        OnlineEntry(*best[key], (f"{key}|{best[key][0]}|{best[key][1]}",)) if key in best else None
        for key in "abc"
    ]
    assert store.read(TEXT, ["a", "b", "c"]) == expected


def test_concurrent_writers_end_in_the_greatest_event(store: OnlineStore) -> None:
    keys = [encode_key(["k", i]) for i in range(30)]
    store.write(TEXT, text_rows([(keys[0], 0, None)]))  # tables exist before the race
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(parity: int) -> None:
        stamps = [(key, event, None) for key in keys for event in range(parity, 60, 2)]
        random.Random(parity).shuffle(stamps)
        start.wait()
        try:
            for at in range(0, len(stamps), 40):
                store.write(TEXT, text_rows(stamps[at : at + 40]))
                store.read(TEXT, keys[:3])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(parity,)) for parity in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert store.read(TEXT, keys) == [OnlineEntry(59, None, (f"{key}|59|None",)) for key in keys]


def test_stores_share_a_location_and_a_closed_one_says_so(
    store: OnlineStore, open_store: Callable[[], OnlineStore]
) -> None:
    store.write(TEXT, text_rows([("a", 1, None)]))
    other = open_store()
    assert other.read(TEXT, ["a"]) == [OnlineEntry(1, None, ("a|1|None",))]
    other.drop([TEXT])  # behind the first store's back: it must create the table again
    assert store.write(TEXT, text_rows([("a", 0, None)])) == 1
    assert other.read(TEXT, ["a"]) == [OnlineEntry(0, None, ("a|0|None",))]
    other.close()
    with pytest.raises(OnlineStoreError, match="closed"):
        other.read(TEXT, ["a"])
    with pytest.raises(OnlineStoreError, match="closed"):
        other.write(TEXT, text_rows([("a", 2, None)]))


def test_redis_drop_unlinks_exactly_the_table_keys(redis_url: str) -> None:
    import redis

    prefix = f"headrace_test_{secrets.token_hex(4)}[*]?"  # glob characters match literally
    client = redis.Redis.from_url(redis_url)
    sibling = f"{prefix[:-4]}*x:text__v1:a"  # what the unescaped pattern would match too
    client.set(sibling, "not ours")
    store = RedisOnlineStore(redis_url, prefix=prefix)
    try:
        store.write(TEXT, text_rows([(encode_key([i]), 1, None) for i in range(2_500)]))
        store.write(OTHER, text_rows([("a", 1, None)]))
        store.drop([TEXT])
        assert set(client.keys(f"{prefix[:-4]}*")) == {
            sibling.encode(),
            f"{prefix}:text__v2:a".encode(),
        }
        store.drop([OTHER])
        assert client.get(sibling) == b"not ours"
    finally:
        client.delete(sibling)
        client.close()
        store.drop(TABLES)
        store.close()
