"""Point-in-time semantics, case by case: headrace vs Feast 0.67 on the same Parquet data.

    .venv/bin/python bench/feast_conformance.py                 # every case, ~20 s
    .venv/bin/python bench/feast_conformance.py --cases 1,7b    # some of them
    .venv/bin/python bench/feast_conformance.py --keep          # keep the data folders
    .venv/bin/python bench/feast_conformance.py --isolated      # one Feast process per case

Each CASE is a small hand-made dataset (a few feature and entity rows; 5,000 keys for the cases
"at scale") that exercises one point of ``docs/features.md``. Per case the script writes
``spec.json``, one Parquet file per view and ``entities.parquet`` (``_row``, the key ``key``,
``event_timestamp`` and, where it matters, a ``label``) into a folder; then

- headrace, in this process: a fresh project in that folder, the pipeline of
  ``bench/training_set.py`` (``_pipeline``: one source per view, a ``FeatureView`` with
  identity features), ``run``, then ``project.features.get_training_data(entities, "bench",
  created_cutoff=...)``;
- Feast, in ``bench/.venvs/feast``: ``bench/peers/feast_training.py`` (file offline store,
  ``get_historical_features(..., full_feature_names=True).to_df()``, plus
  ``--filter-by-created-timestamp`` where the case uses the created cutoff). Its ``main`` is
  called once per case inside ``--jobs`` Feast processes that share the cases (importing Feast
  and Dask costs ~6 s a process; each call builds its own throwaway repo); ``--isolated`` runs
  one process per case instead (same results, ~1.5 minutes).

Both outputs are compared row by row by ``_row``: a row Feast does not return is *dropped*
(*collapsed* when it shares key and entity time with a row Feast does return); values are
compared as numbers (1 == 1.0; null only equals null), and so are the feature columns' dtypes.
Output order is judged only in the case about order (10). The report prints, per case, what it
tests, what our docs say, the feature data, each entity row with both sides' values (for the
cases at scale: how often each value is returned), and a verdict, ``same`` or
``differs: ...``; the results go to ``bench/results/feast_conformance-<date>.json``.
Differences are expected (docs/features.md, "Differences from Feast"), so the exit code is 0
whatever they are, and 1 only when a side crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _runner import error_summary  # noqa: E402
from training_set import _pipeline  # noqa: E402

FEAST_PYTHON = HERE / ".venvs" / "feast" / "bin" / "python"
FEAST_SCRIPT = HERE / "peers" / "feast_training.py"
DAY = date(2024, 1, 1)
UTC_US = pl.Datetime("us", "UTC")
HOUR = 3600


# -- building cases --------------------------------------------------------------------------


def t(text: str) -> datetime:
    """``"10:00"``, ``"11:00:00.000001"``, ``"12:30+02:00"`` on 2024-01-01, as a UTC instant."""
    moment = datetime.fromisoformat(f"{DAY.isoformat()}T{text}")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def view_rows(
    rows: list[tuple[Any, ...]], *, dtype: pl.DataType = pl.Float64, created: bool = True
) -> pl.DataFrame:
    """Feature rows ``(key, event, created, f)`` (or ``(key, event, f)`` without created)."""
    if not created:
        rows = [(k, e, None, v) for k, e, v in rows]
    frame = pl.DataFrame(
        {
            "key": [r[0] for r in rows],
            "event_ts": [t(r[1]) for r in rows],
            "created_ts": [t(r[2]) if r[2] else None for r in rows],
            "f": [r[3] for r in rows],
        },
        schema={"key": pl.String, "event_ts": UTC_US, "created_ts": UTC_US, "f": dtype},
    )
    return frame if created else frame.drop("created_ts")


def entity_rows(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """Entity rows ``(key, time)`` or ``(key, time, label)``; ``_row`` is the input position."""
    data: dict[str, Any] = {
        "_row": list(range(len(rows))),
        "key": [r[0] for r in rows],
        "event_timestamp": [t(r[1]) for r in rows],
    }
    schema: dict[str, Any] = {"_row": pl.Int64, "key": pl.String, "event_timestamp": UTC_US}
    if any(len(r) > 2 for r in rows):
        data["label"] = [r[2] for r in rows]
        schema["label"] = pl.String
    return pl.DataFrame(data, schema=schema)


@dataclass
class View:
    name: str
    frame: pl.DataFrame
    ttl_seconds: int
    event_tz: str | None = "UTC"
    """Time zone of the event column in the Parquet file (None: naive, UTC wall time)."""


@dataclass
class Case:
    id: str
    title: str
    tests: str
    docs: str
    """What docs/features.md says about it ("Differences from Feast" and the training rules)."""
    views: list[View]
    entities: pl.DataFrame
    entity_tz: str | None = "UTC"
    """Time zone of ``event_timestamp`` in entities.parquet (None: naive, UTC wall time)."""
    created_cutoff: bool = False
    check_order: bool = False
    target: str | None = None
    """Many rows: print how often each value wins instead of every row; ``target`` is the
    right one (formatted, e.g. ``"3"``), described by ``target_means``."""
    target_means: str = ""
    key_type: str = "string"

    @property
    def scale(self) -> bool:
        return self.target is not None


def cases() -> list[Case]:
    one = [View("v", view_rows([("a", "10:00", "10:00", 1.0)]), HOUR)]
    out = [
        Case(
            "1",
            "TTL boundary",
            "feature a@10:00, ttl 1h; entity rows at 11:00 (age = ttl), 11:00 + 1us, 10:00 "
            "(age 0) and 09:59:59.999999 (before the first value)",
            "TTL inclusive on both sides (t - ttl <= event <= t); Feast drops rows whose key "
            "has history but none in the window",
            one,
            entity_rows(
                [("a", "11:00"), ("a", "11:00:00.000001"), ("a", "10:00"), ("a", "09:59:59.999999")]
            ),
        ),
        Case(
            "2",
            "Key with history, none within the TTL",
            "feature a@08:00, ttl 1h; entity rows a@10:00 (expired) and a@08:30 (in window)",
            "Feast: row dropped; headrace: row kept, nulls",
            [View("v", view_rows([("a", "08:00", "08:00", 1.0)]), HOUR)],
            entity_rows([("a", "10:00"), ("a", "08:30")]),
        ),
        Case(
            "3",
            "Key never seen",
            "feature a@10:00, ttl 1h; entity rows zz@10:30 (unknown key) and a@10:30",
            "both keep the row, with nulls",
            one,
            entity_rows([("zz", "10:30"), ("a", "10:30")]),
        ),
        Case(
            "4",
            "Two views, one without an in-window value",
            "v1: a, b, c @10:00; v2: a@10:00, b@07:00 (expired at 10:30, ttl 1h), c unknown; "
            "entity rows a, b, c @10:30",
            "Feast: row dropped for every view when one view has history but no in-window "
            "value; headrace: kept, that view's features null",
            [
                View(
                    "v1",
                    view_rows(
                        [(k, "10:00", "10:00", x) for k, x in [("a", 1.0), ("b", 2.0), ("c", 3.0)]]
                    ),
                    HOUR,
                ),
                View(
                    "v2",
                    view_rows([("a", "10:00", "10:00", 10.0), ("b", "07:00", "07:00", 20.0)]),
                    HOUR,
                ),
            ],
            entity_rows([("a", "10:30"), ("b", "10:30"), ("c", "10:30")]),
        ),
        Case(
            "5",
            "Two entity rows with the same key and time, different labels (Feast #6787)",
            "feature a@10:00, ttl 1h; entity rows (a, 10:30, label x), (a, 10:30, label y), "
            "(a, 10:31, label z)",
            "Feast: collapsed into one, the other row's columns lost; headrace: both kept",
            one,
            entity_rows([("a", "10:30", "x"), ("a", "10:30", "y"), ("a", "10:31", "z")]),
        ),
        Case(
            "6a",
            "Ties on event time, 3 rows differing in created time (Feast #3360), tiny",
            "per key 3 rows at event 10:00, created 10:05/10:07/10:09 with f = 1/2/3 (max "
            "created = 3), file order a: 2,3,1; b: 1,2,3; c: 3,2,1; entity rows @11:00, ttl 1h",
            "Feast: max created wins on tiny data; headrace: max created wins, always",
            [
                View(
                    "v",
                    view_rows(
                        _tied("a", [2, 3, 1]) + _tied("b", [1, 2, 3]) + _tied("c", [3, 2, 1])
                    ),
                    HOUR,
                )
            ],
            entity_rows([("a", "11:00"), ("b", "11:00"), ("c", "11:00")]),
        ),
        _ties_at_scale("6b", varying=True),
        _ties_at_scale("6c", varying=False),
    ]
    created_after = view_rows(
        [
            ("a", "09:00", "09:00", 1.0),  # existed at 11:00
            ("a", "10:00", "12:00", 2.0),  # backfilled at 12:00
            ("b", "10:00", "12:00", 5.0),  # the only value, recorded after 11:00
            ("c", "08:00", "08:00", 1.0),  # existed, but older than the ttl at 11:00
            ("c", "10:30", "12:00", 2.0),
            ("d", "10:00", None, 7.0),  # no created time
            ("e", "10:00", "10:00", 1.0),  # tie on event time, one created later
            ("e", "10:00", "12:00", 2.0),
        ]
    )
    created_entities = entity_rows([(k, "11:00") for k in "abcde"])
    setup7 = (
        "ttl 2h, entity rows @11:00. a: 09:00 (created 09:00) = 1, 10:00 (created 12:00) = 2; "
        "b: only 10:00 (created 12:00) = 5; c: 08:00 (created 08:00, expired) = 1, 10:30 "
        "(created 12:00) = 2; d: 10:00 (created null) = 7; e: 10:00 created 10:00 = 1 and "
        "10:00 created 12:00 = 2"
    )
    out += [
        Case(
            "7a",
            "Value created after the entity time (Feast #6615), default",
            setup7,
            "both serve the value created after t (leakage) by default",
            [View("v", created_after, 2 * HOUR)],
            created_entities,
        ),
        Case(
            "7b",
            "Value created after the entity time, with the created cutoff",
            setup7 + "; headrace created_cutoff=True, Feast filter_by_created_timestamp=True",
            "Feast: blanks the too-new value; headrace: excludes it and falls back to the "
            "newest value that existed at t; a null created time counts as recorded at the "
            "event time (headrace)",
            [View("v", created_after, 2 * HOUR)],
            created_entities,
            created_cutoff=True,
        ),
        _created_cutoff_at_scale("7c"),
    ]
    tz_data = view_rows([("a", "09:00", "09:00", 1.0), ("a", "10:00", "10:00", 2.0)])
    instants = ["09:30", "10:00", "09:59:59", "10:30"]  # UTC; expected f = 1, 2, 1, 2
    tz_note = (
        "feature a@09:00Z = 1 and a@10:00Z = 2, ttl 1 day; entity rows at the instants "
        "09:30Z, 10:00Z, 09:59:59Z, 10:30Z (right answers 1, 2, 1, 2)"
    )
    for cid, zone, what in [
        ("8a", None, "naive"),
        ("8b", "UTC", "UTC"),
        ("8c", "+02:00", "+02:00"),
    ]:
        out.append(
            Case(
                cid,
                f"Time zones: entity times {what}",
                f"{tz_note}, written as {what} times"
                + (" (UTC wall time)" if zone is None else ""),
                "naive = UTC, zoned converted, on both sides",
                [View("v", tz_data, 24 * HOUR)],
                entity_rows([("a", x) for x in instants]),
                entity_tz=zone,
            )
        )
    for cid, zone, what in [("8d", None, "naive"), ("8e", "+02:00", "+02:00")]:
        out.append(
            Case(
                cid,
                f"Time zones: feature event times {what}",
                f"{tz_note}; the feature file's event times are {what}, entity times UTC",
                "naive = UTC, zoned converted (the docs state it for entity rows)",
                [View("v", tz_data, 24 * HOUR, event_tz=zone)],
                entity_rows([("a", x) for x in instants]),
            )
        )
    ints = view_rows([("a", "10:00", "10:00", None), ("b", "10:00", "10:00", 5)], dtype=pl.Int64)
    ints_full = view_rows([("b", "10:00", "10:00", 5), ("c", "10:00", "10:00", 6)], dtype=pl.Int64)
    out += [
        Case(
            "9a",
            "Integer feature with a null: output dtype",
            "int64 feature, a@10:00 = null, b@10:00 = 5, ttl 1h; entity rows a, b, zz (unknown) "
            "@10:30",
            "Feast: becomes float; headrace: stays integer (null)",
            [View("v", ints, HOUR)],
            entity_rows([("a", "10:30"), ("b", "10:30"), ("zz", "10:30")]),
        ),
        Case(
            "9b",
            "Integer feature, no null in the output",
            "int64 feature, b@10:00 = 5, c@10:00 = 6, ttl 1h; entity rows b, c @10:30",
            "(not in the table: Feast's float comes from nulls)",
            [View("v", ints_full, HOUR)],
            entity_rows([("b", "10:30"), ("c", "10:30")]),
        ),
        Case(
            "9c",
            "Integer feature, no null in the output, created cutoff",
            "as 9b, with headrace created_cutoff=True / Feast filter_by_created_timestamp=True",
            "(not in the table)",
            [View("v", ints_full, HOUR)],
            entity_rows([("b", "10:30"), ("c", "10:30")]),
            created_cutoff=True,
        ),
        Case(
            "10",
            "Output row order vs input order",
            "a..e @10:00, ttl 1h; entity rows in neither key nor time order: c@10:50, "
            "a@10:10, e@10:40, b@10:20, zz@10:30 (unknown key), d@10:05",
            "Feast: neither input nor time order; headrace: input order",
            [
                View(
                    "v",
                    view_rows([(k, "10:00", "10:00", float(i)) for i, k in enumerate("abcde")]),
                    HOUR,
                )
            ],
            entity_rows(
                [
                    ("c", "10:50"),
                    ("a", "10:10"),
                    ("e", "10:40"),
                    ("b", "10:20"),
                    ("zz", "10:30"),
                    ("d", "10:05"),
                ]
            ),
            check_order=True,
        ),
    ]
    null_entities = entity_rows([(None, "10:30"), (None, "10:30"), (None, "10:40"), ("a", "10:30")])
    out += [
        Case(
            "11a",
            "Null entity key",
            "feature a@10:00, ttl 1h, no null key in the feature data; entity rows null@10:30, "
            "null@10:30, null@10:40, a@10:30",
            "headrace: null key -> nulls, counted in unusable_rows (not in the Feast table)",
            one,
            null_entities,
        ),
        Case(
            "11b",
            "Null entity key, feature data with a null-key row",
            "as 11a, plus a feature row with a null key @10:00 = 9",
            "headrace: source rows with a null key are skipped; entity rows with a null key "
            "get nulls",
            [
                View(
                    "v",
                    view_rows([("a", "10:00", "10:00", 1.0), (None, "10:00", "10:00", 9.0)]),
                    HOUR,
                )
            ],
            null_entities,
        ),
    ]
    return out


def _tied(key: str, values: list[int]) -> list[tuple[Any, ...]]:
    """3 rows of ``key`` at event 10:00; value v is created at 10:03 + 2 v minutes."""
    return [(key, "10:00", f"10:{3 + 2 * v:02d}", float(v)) for v in values]


def _ties_at_scale(cid: str, *, varying: bool, keys: int = 5000) -> Case:
    """``keys`` keys x 3 rows tied on event time, created +1/+2/+3 min, f = 1/2/3, shuffled."""
    rng = np.random.default_rng(6)
    base = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    event = base + (rng.integers(0, 86400, keys) if varying else np.full(keys, 36000))
    key = np.repeat(np.arange(keys, dtype=np.int64), 3)
    value = np.tile(np.array([1, 2, 3], dtype=np.int64), keys)
    ev = np.repeat(event, 3)
    frame = pl.DataFrame(
        {
            "key": key,
            "event_ts": _micros(ev),
            "created_ts": _micros(ev + 60 * value),
            "f": value.astype(np.float64),
        }
    )
    frame = frame[rng.permutation(frame.height)]
    entities = pl.DataFrame(
        {
            "_row": np.arange(keys, dtype=np.int64),
            "key": np.arange(keys, dtype=np.int64),
            "event_timestamp": _micros(event + 1800),
        }
    )
    how = "at event times that vary by key" if varying else "all at one event time (10:00)"
    return Case(
        cid,
        f"Ties on event time at scale, {how}",
        f"{keys:,} keys x 3 rows tied on event time {how}, created +1/+2/+3 min with f = "
        "1/2/3 (max created = 3), file shuffled; one entity row per key, 30 min later, ttl 1 day",
        "Feast: at scale effectively arbitrary; headrace: max created wins, always",
        [View("v", frame, 24 * HOUR)],
        entities,
        target="3",
        target_means="the max-created row",
        key_type="int64",
    )


def _created_cutoff_at_scale(cid: str, keys: int = 5000) -> Case:
    """Per key: f = 1 at e (created e), f = 2 at e + 30 min created e + 2 h; entity e + 1 h."""
    rng = np.random.default_rng(7)
    base = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    event = base + rng.integers(0, 86400, keys)
    frame = pl.DataFrame(
        {
            "key": np.repeat(np.arange(keys, dtype=np.int64), 2),
            "event_ts": _micros(np.repeat(event, 2) + np.tile([0, 1800], keys)),
            "created_ts": _micros(np.repeat(event, 2) + np.tile([0, 7200], keys)),
            "f": np.tile([1.0, 2.0], keys),
        }
    )
    frame = frame[rng.permutation(frame.height)]
    entities = pl.DataFrame(
        {
            "_row": np.arange(keys, dtype=np.int64),
            "key": np.arange(keys, dtype=np.int64),
            "event_timestamp": _micros(event + 3600),
        }
    )
    return Case(
        cid,
        "Created cutoff at scale: fall back to the value that existed",
        f"{keys:,} keys, each: f = 1 at e (created e), f = 2 at e + 30 min (created e + 2 h), "
        "event times varying by key, file shuffled; one entity row per key at e + 1 h, ttl 1 "
        "day; headrace created_cutoff=True, Feast filter_by_created_timestamp=True",
        "Feast: blanks the too-new value (null); headrace: falls back to the value that "
        "existed at t (1)",
        [View("v", frame, 24 * HOUR)],
        entities,
        created_cutoff=True,
        target="1",
        target_means="the newest value that existed at t",
        key_type="int64",
    )


def _micros(seconds: np.ndarray) -> pl.Series:
    return pl.Series(seconds.astype(np.int64) * 1_000_000).cast(UTC_US)


# -- writing and running ---------------------------------------------------------------------


def _write(frame: pl.DataFrame, path: Path, zones: dict[str, str | None]) -> None:
    """``frame`` as Parquet; the given timestamp columns re-labelled to another zone (same
    instants; None = naive, holding the UTC wall time)."""
    table = frame.to_arrow()
    for column, zone in zones.items():
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, table[column].cast(pa.timestamp("us", tz=zone)))
    pq.write_table(table, path)


def write_case(case: Case, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    views = []
    for view in case.views:
        zones = {"event_ts": view.event_tz} if view.event_tz != "UTC" else {}
        _write(view.frame, folder / f"{view.name}.parquet", zones)
        views.append(
            {
                "name": view.name,
                "path": f"{view.name}.parquet",
                "event_time": "event_ts",
                "created_time": "created_ts" if "created_ts" in view.frame.columns else None,
                "ttl_seconds": view.ttl_seconds,
                "features": ["f"],
            }
        )
    zones = {"event_timestamp": case.entity_tz} if case.entity_tz != "UTC" else {}
    _write(case.entities, folder / "entities.parquet", zones)
    spec = {
        "entity": {"name": "thing", "join_keys": ["key"], "value_type": case.key_type},
        "entity_rows": {"path": "entities.parquet", "time": "event_timestamp"},
        "views": views,
    }
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))
    return spec


# Runs feast_training.main once per case in one Feast interpreter: importing Feast and Dask
# takes ~6 s, the cases themselves ~1 s each. Each call builds its own throwaway repo.
_FEAST_BATCH = """
import json, sys
sys.path.insert(0, sys.argv[1])
import feast_training
for data, out, cutoff in json.loads(sys.argv[2]):
    flags = ["--filter-by-created-timestamp"] if cutoff else []
    feast_training.main(["--data", data, "--out", out, *flags])
"""


def run_feast(batch: list[tuple[Case, Path]], log: Path) -> list[dict[str, Any]]:
    """Feast's records (the JSON line of ``feast_training.py``), one per case of ``batch``."""
    jobs = [
        [str(folder), str(folder / "out_feast.parquet"), case.created_cutoff]
        for case, folder in batch
    ]
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    cmd = [str(FEAST_PYTHON), "-c", _FEAST_BATCH, str(FEAST_SCRIPT.parent), json.dumps(jobs)]
    try:
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=900, env=env
        )
    except subprocess.TimeoutExpired:
        return [{"error": "Feast timed out after 900s"} for _ in batch]
    log.write_text(proc.stderr)
    records = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    missing = {
        "error": f"no record from Feast (exit {proc.returncode}); {error_summary(proc.stderr)}"
    }
    return [records[i] if i < len(records) else missing for i in range(len(batch))]


def run_headrace(case: Case, folder: Path, spec: dict[str, Any]) -> dict[str, Any]:
    import headrace as hr

    started = time.perf_counter()
    entities = pl.read_parquet(folder / "entities.parquet")
    with hr.Project.create(folder / "project") as project:
        project.run(_pipeline(spec, folder)).raise_for_status()
        built = project.features.get_training_data(
            entities, "bench", created_cutoff=case.created_cutoff
        )
    built.frame.write_parquet(folder / "out_headrace.parquet")
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "rows_out": built.frame.height,
        "unusable_rows": built.unusable_rows,
    }


# -- comparing -------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b)


def compare(
    case: Case, entities: pl.DataFrame, ours: pl.DataFrame, theirs: pl.DataFrame, columns: list[str]
) -> dict[str, Any]:
    """Row-by-row comparison by ``_row``; the verdict and the facts behind it."""
    mine = {r["_row"]: [r[c] for c in columns] for r in ours.iter_rows(named=True)}
    theirs_by_row: dict[int, list[list[Any]]] = {}
    for r in theirs.iter_rows(named=True):
        theirs_by_row.setdefault(int(r["_row"]), []).append([r[c] for c in columns])
    returned = {
        (r["key"], r["event_timestamp"])
        for r in entities.iter_rows(named=True)
        if r["_row"] in theirs_by_row
    }
    rows, dropped, collapsed, duplicated, differing = [], [], [], [], []
    for r in entities.iter_rows(named=True):
        i = r["_row"]
        h = mine.get(i)
        got = theirs_by_row.get(i, [])
        if not got:
            partner = (r["key"], r["event_timestamp"]) in returned
            status = "Feast collapses it" if partner else "Feast drops it"
            (collapsed if partner else dropped).append(i)
        elif len(got) > 1:
            status = f"Feast returns it {len(got)} times"
            duplicated.append(i)
        elif h is None or not all(_same(a, b) for a, b in zip(h, got[0], strict=True)):
            status = "values differ"
            differing.append(i)
        else:
            status = "same"
        rows.append(
            {
                "_row": i,
                "key": r["key"],
                "entity_time": r["event_timestamp"],
                "label": r.get("label"),
                "headrace": h,
                "feast": got[0] if got else None,
                "status": status,
            }
        )
    diffs = []

    def nulls(ids: list[int]) -> str:
        vals = [mine.get(i) for i in ids]
        if all(v is not None and all(x is None for x in v) for v in vals):
            return "headrace: nulls"
        return "headrace: " + "; ".join(f"_row {i} = {_fmt_values(mine.get(i))}" for i in ids)

    if dropped:
        diffs.append(f"Feast drops _row {_ids(dropped)} ({nulls(dropped)})")
    if collapsed:
        diffs.append(
            f"Feast collapses _row {_ids(collapsed)} into another row with the same key and "
            "time (headrace keeps it)"
        )
    if duplicated:
        diffs.append(f"Feast returns _row {_ids(duplicated)} more than once")
    if differing:
        parts = [
            f"_row {i}: headrace {_fmt_values(mine.get(i))}, Feast "
            f"{_fmt_values(theirs_by_row[i][0])}"
            for i in differing
        ]
        if len(parts) > 6:
            parts = [*parts[:6], f"... ({len(parts)} rows)"]
        diffs.append("values differ: " + "; ".join(parts))
    dtypes = {c: (str(ours.schema[c]), str(theirs.schema[c])) for c in columns}
    diffs += [f"{c} is {a} in headrace, {b} in Feast" for c, (a, b) in dtypes.items() if a != b]
    input_order = entities["_row"].to_list()
    orders = {
        "input": input_order,
        "headrace": ours["_row"].to_list(),
        "feast": [int(x) for x in theirs["_row"].to_list()],
    }
    if orders["headrace"] != input_order:
        diffs.append("headrace's rows are not in the input order")
    if case.check_order and orders["feast"] != input_order:
        diffs.append(f"Feast's order is _row {orders['feast']}, not the input order")
    result = {
        "verdict": "same" if not diffs else "differs: " + "; ".join(diffs),
        "rows": rows,
        "dtypes": dtypes,
        "order": orders,
        "counts": {
            "entity_rows": entities.height,
            "headrace_rows": ours.height,
            "feast_rows": theirs.height,
            "same": sum(r["status"] == "same" for r in rows),
            "dropped": len(dropped),
            "collapsed": len(collapsed),
            "duplicated": len(duplicated),
            "differing": len(differing),
        },
    }
    if case.scale:  # keep the report small: only the rows that differ, at most 50
        result["rows"] = [r for r in rows if r["status"] != "same"][:50]
        del result["order"]
        result["winners"] = {
            "headrace": _winners(ours, columns[0]),
            "feast": _winners(theirs, columns[0]),
        }
        hits = {side: w.get(case.target or "", 0) for side, w in result["winners"].items()}
        result["target_hits"] = hits
        if hits["headrace"] != hits["feast"]:
            n = entities.height
            extra = result["verdict"].removeprefix("differs: ")
            result["verdict"] = (
                f"differs: {case.target_means} (f = {case.target}) is returned for "
                f"{hits['headrace']:,}/{n:,} rows by headrace, {hits['feast']:,}/{n:,} by Feast "
                f"({extra})"
            )
    return result


def _winners(frame: pl.DataFrame, column: str) -> dict[str, int]:
    counts = Counter("null" if v is None else f"{v:g}" for v in frame[column].to_list())
    return dict(sorted(counts.items()))


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (f" ... ({len(ids)} rows)" if len(ids) > 10 else "")


# -- report ----------------------------------------------------------------------------------


def _fmt_time(moment: datetime | None) -> str:
    if moment is None:
        return "null"
    text = moment.strftime("%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    if moment.date() != DAY:
        text = f"{moment.date().isoformat()} {text}"
    if moment.tzinfo is None:
        return text + " naive"
    offset = moment.strftime("%z")
    return text + ("Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}")


def _fmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fmt_values(values: list[Any] | None) -> str:
    if values is None:
        return "-"
    return ", ".join(_fmt_value(v) for v in values)


def _describe_data(case: Case, folder: Path) -> list[str]:
    lines = []
    for view in case.views:
        frame = pl.read_parquet(folder / f"{view.name}.parquet")
        cells = []
        for r in frame.iter_rows(named=True):
            created = r.get("created_ts", "absent")
            made = "" if created == "absent" else f" (created {_fmt_time(created)})"
            cells.append(f"{r['key']}@{_fmt_time(r['event_ts'])}{made} = {_fmt_value(r['f'])}")
        ttl = timedelta(seconds=view.ttl_seconds)
        lines.append(f"  data {view.name} (ttl {ttl}): " + "; ".join(cells))
    return lines


def print_case(case: Case, folder: Path, result: dict[str, Any], columns: list[str]) -> None:
    print(f"\n=== {case.id}. {case.title}")
    print(f"  tests: {case.tests}")
    print(f"  docs:  {case.docs}")
    if "error" in result:
        print(f"  ERROR: {result['error']}")
        return
    if not case.scale:
        for line in _describe_data(case, folder):
            print(line)
        entities = pl.read_parquet(folder / "entities.parquet")  # times in their written zone
        shown = {r["_row"]: r["event_timestamp"] for r in entities.iter_rows(named=True)}
        has_label = "label" in entities.columns
        head = f"  {'_row':>4} {'key':<5} {'entity time':<26}"
        head += f"{'label':<6}" if has_label else ""
        width = max(14, 4 + 9 * len(columns))
        print(head + f"{'headrace':<{width}} {'Feast':<{width}} row")
        print(
            f"  {'':>4} {'':<5} {'':<26}"
            + ("" if not has_label else " " * 6)
            + f"{', '.join(columns):<{width}} "
        )
        for r in result["rows"]:
            line = f"  {r['_row']:>4} {_fmt_value(r['key']):<5} "
            line += f"{_fmt_time(shown[r['_row']]):<26}"
            line += f"{_fmt_value(r['label']):<6}" if has_label else ""
            feast = _fmt_values(r["feast"]) if r["feast"] is not None else "(not returned)"
            line += f"{_fmt_values(r['headrace']):<{width}} {feast:<{width}} {r['status']}"
            print(line)
    else:
        c = result["counts"]
        print(
            f"  rows: {c['entity_rows']:,} entity rows; headrace {c['headrace_rows']:,}, "
            f"Feast {c['feast_rows']:,}; {c['same']:,} the same"
        )
        for side in ("headrace", "feast"):
            print(
                f"  {side:<8} values returned ({case.target} = {case.target_means}): "
                f"{result['winners'][side]}"
            )
    dtypes = ", ".join(f"{c}: {a} / {b}" for c, (a, b) in result["dtypes"].items())
    print(f"  dtypes (headrace / Feast): {dtypes}")
    if result["headrace"].get("unusable_rows"):
        print(f"  headrace unusable_rows: {result['headrace']['unusable_rows']}")
    if not case.scale:
        print(
            f"  order: headrace {result['order']['headrace']}, Feast {result['order']['feast']}"
            + ("" if case.check_order else " (not judged here)")
        )
    print(f"  verdict: {result['verdict']}")


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", help="comma-separated case ids (default: all)")
    ap.add_argument(
        "--jobs", type=int, default=2, help="Feast processes, each running a share of the cases"
    )
    ap.add_argument(
        "--isolated", action="store_true", help="one Feast process per case (slower; same results)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the data folders")
    args = ap.parse_args(argv)
    if not FEAST_PYTHON.exists():
        print(f"no Feast venv at {FEAST_PYTHON}; run bench/peers/setup.py feast")
        return 1
    chosen = cases()
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = sorted(set(wanted) - {c.id for c in chosen})
        if unknown:
            ap.error(f"unknown case(s) {unknown}; known: {', '.join(c.id for c in chosen)}")
        chosen = [c for c in chosen if c.id in wanted]
    root = Path(tempfile.mkdtemp(prefix="headrace-feast-conformance-"))
    started = time.perf_counter()
    specs = {c.id: write_case(c, root / f"case_{c.id}") for c in chosen}
    crashed = False
    results: dict[str, dict[str, Any]] = {}
    jobs = len(chosen) if args.isolated else max(1, min(args.jobs, len(chosen)))
    batches = [[(c, root / f"case_{c.id}") for c in chosen[i::jobs]] for i in range(jobs)]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures: list[Future[list[dict[str, Any]]]] = [
            pool.submit(run_feast, batch, root / f"feast-{i}.log")
            for i, batch in enumerate(batches)
        ]
        for case in chosen:
            try:
                results[case.id] = {
                    "headrace": run_headrace(case, root / f"case_{case.id}", specs[case.id])
                }
            except Exception as exc:
                traceback.print_exc()
                results[case.id] = {"headrace": {"error": f"{type(exc).__name__}: {exc}"}}
        for batch, future in zip(batches, futures, strict=True):
            for (case, _), record in zip(batch, future.result(), strict=True):
                results[case.id]["feast"] = record
    feast_version = None
    for case in chosen:
        folder = root / f"case_{case.id}"
        res = results[case.id]
        columns = [f"{v['name']}__{f}" for v in specs[case.id]["views"] for f in v["features"]]
        errors = [
            f"{side}: {res[side]['error']}"
            for side in ("headrace", "feast")
            if "error" in res[side]
        ]
        if errors:
            crashed = True
            res["error"] = " | ".join(errors)
            res["verdict"] = "crashed: " + res["error"][:300]
        else:
            feast_version = res["feast"].get("version", feast_version)
            res.update(
                compare(
                    case,
                    pl.read_parquet(folder / "entities.parquet"),
                    pl.read_parquet(folder / "out_headrace.parquet"),
                    pl.read_parquet(folder / "out_feast.parquet"),
                    columns,
                )
            )
        print_case(case, folder, res, columns)
    elapsed = time.perf_counter() - started

    print(f"\n{'case':<5} {'what':<62} verdict")
    for case in chosen:
        verdict = results[case.id]["verdict"]
        print(f"{case.id:<5} {case.title[:62]:<62} {verdict[:200]}")
    now = datetime.now(UTC)
    record = {
        "date": now.isoformat(timespec="seconds"),
        "feast_version": feast_version,
        "seconds": round(elapsed, 1),
        "cases": [
            {
                "id": c.id,
                "title": c.title,
                "tests": c.tests,
                "docs": c.docs,
                "created_cutoff": c.created_cutoff,
                **results[c.id],
            }
            for c in chosen
        ],
    }
    out = HERE / "results" / f"feast_conformance-{now:%Y-%m-%d}.json"
    if args.cases:
        out = out.with_name(f"feast_conformance-{now:%Y-%m-%d}-cases.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"\n{len(chosen)} cases in {elapsed:.0f}s (Feast {feast_version}); results in {out}")
    if args.keep:
        print(f"data kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    if crashed:
        print("a side crashed (see above); exit 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
