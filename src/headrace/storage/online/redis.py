"""The Redis online store: one string key per entity, shared by many machines.

Layout: the entry of encoded key ``K`` in table ``T`` is the key ``{prefix}:{T}:{K}`` holding
the compact JSON text ``[event_us, created_us, [value, ...]]`` (``created_us`` may be
``null``). A read is one ``MGET``; a write runs a Lua script that, key by key, replaces the
stored text only when the incoming ``(event_us, created_us)`` is greater than or equal to the
stored one, so racing writers and replays are safe. The script gets up to 1,000 keys per call
and the calls of a batch are pipelined (100,000 keys per round trip). Event times are compared
as Lua numbers (doubles): exact up to 2**53 microseconds, the year 2255.

JSON is written and read with orjson (15 times faster than :mod:`json` at decoding floats,
which dominates a lookup). Like JSON itself it has no NaN or infinity: those are stored as
``null`` and read back as None, as SQLite does with NaN.

Keys of one batch go in one ``EVALSHA``, so Redis Cluster (keys in many slots) is not
supported; use one Redis server or a replicated primary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis

from headrace.core.redaction import redact
from headrace.errors import OnlineStoreError
from headrace.storage.online.base import OnlineEntry, OnlineRows, OnlineStore, OnlineTable

__all__ = ["RedisOnlineStore"]

_CHUNK = 1_000
"""Keys per script call: keeps each call (which blocks Redis) around a millisecond."""
_PIPELINE = 100
"""Script calls per pipelined round trip: bounds the memory a huge batch needs at once."""

_WRITE = """
local changed = 0
local pattern = '^%[(%-?%d+),([^,]+),'
for i, key in ipairs(KEYS) do
  local value = ARGV[i]
  local newer = true
  local old = redis.call('GET', key)
  if old then
    local old_event, old_created = string.match(old, pattern)
    if old_event then
      local event, created = string.match(value, pattern)
      event, old_event = tonumber(event), tonumber(old_event)
      created, old_created = tonumber(created) or -1, tonumber(old_created) or -1
      newer = event > old_event or (event == old_event and created >= old_created)
    end
  end
  if newer then
    redis.call('SET', key, value)
    changed = changed + 1
  end
end
return changed
"""

_HINT = (
    "check the online store URL and that the Redis server is running and reachable "
    "(redis-cli -u <url> ping)"
)


class RedisOnlineStore(OnlineStore):
    """An online store in Redis (``redis://`` or ``rediss://`` for TLS).

    ``prefix`` starts every key this store writes, so several projects (or test runs) can share
    one database; :meth:`drop` removes a table's keys by ``SCAN`` + ``UNLINK`` under it. The
    server is pinged on open, so a wrong URL fails here rather than at the first lookup.
    """

    kind = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "headrace") -> None:
        self.url = url
        self.prefix = prefix
        self._closed = False
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url, socket_connect_timeout=5, socket_timeout=30
            )
            self._client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise self._failure(exc, doing="cannot connect to") from exc
        self._script = self._client.register_script(_WRITE)

    def describe(self) -> str:
        """The URL without its password, and the key prefix."""
        return f"{redact(self.url)} (key prefix {self.prefix!r})"

    def write(self, table: OnlineTable, rows: OnlineRows) -> int:
        """Upsert ``rows``: pipelined script calls; the greater ``(event_us, created_us)`` wins."""
        if not len(rows):
            return 0
        self._check_open()
        head = f"{self.prefix}:{table.name}:"
        keys = [head + key for key in rows.keys]
        dumps = orjson.dumps
        changed = 0
        try:
            payloads = [
                dumps([event, created, values])
                for event, created, values in zip(
                    rows.event_us, rows.created_us, rows.values, strict=True
                )
            ]
            if len(keys) <= _CHUNK:
                return int(self._script(keys=keys, args=payloads))
            step = _CHUNK * _PIPELINE
            for start in range(0, len(keys), step):
                pipe = self._client.pipeline(transaction=False)
                for at in range(start, min(start + step, len(keys)), _CHUNK):
                    self._script(
                        keys=keys[at : at + _CHUNK], args=payloads[at : at + _CHUNK], client=pipe
                    )
                changed += sum(int(count) for count in pipe.execute())
        except (redis.RedisError, orjson.JSONEncodeError) as exc:
            raise self._failure(exc, doing=f"cannot write table {table.name!r} to") from exc
        return changed

    def read(self, table: OnlineTable, keys: Sequence[str]) -> list[OnlineEntry | None]:
        """The entries of ``keys`` in order (one ``MGET``); None where nothing is stored."""
        if not keys:
            return []
        self._check_open()
        head = f"{self.prefix}:{table.name}:"
        try:
            raw: list[bytes | str | None] = self._client.mget([head + key for key in keys])
        except redis.RedisError as exc:
            raise self._failure(exc, doing=f"cannot read table {table.name!r} from") from exc
        loads = orjson.loads
        entries: list[OnlineEntry | None] = []
        for text in raw:
            if text is None:
                entries.append(None)
            else:
                event, created, values = loads(text)
                entries.append(OnlineEntry(event, created, tuple(values)))
        return entries

    def drop(self, tables: Iterable[OnlineTable]) -> None:
        """Unlink every key of the tables (``SCAN`` under ``{prefix}:{table}:``)."""
        self._check_open()
        for table in tables:
            pattern = _glob_escape(f"{self.prefix}:{table.name}:") + "*"
            try:
                batch: list[Any] = []
                for key in self._client.scan_iter(match=pattern, count=_CHUNK):
                    batch.append(key)
                    if len(batch) >= _CHUNK:
                        self._client.unlink(*batch)
                        batch.clear()
                if batch:
                    self._client.unlink(*batch)
            except redis.RedisError as exc:
                raise self._failure(exc, doing=f"cannot drop table {table.name!r} from") from exc

    def close(self) -> None:
        """Close the connection pool."""
        self._closed = True
        self._client.close()

    def _check_open(self) -> None:
        if self._closed:
            msg = f"the online store {self.describe()} is closed; open a new one"
            raise OnlineStoreError(msg)

    def _failure(self, exc: BaseException, *, doing: str) -> OnlineStoreError:
        lines = str(exc).strip().splitlines()
        reason = redact(lines[0] if lines else type(exc).__name__).rstrip(".")
        where = self.describe()
        return OnlineStoreError(f"{doing} the online store {where}: {reason}; {_HINT}")


def _glob_escape(text: str) -> str:
    r"""``text`` with Redis glob characters escaped, to match it literally.

    >>> _glob_escape("a*b[1]?\\")
    'a\\*b\\[1\\]\\?\\\\'
    """
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
