"""Feast side of the training-set (point-in-time join) comparison.

Run in bench/.venvs/feast (``python bench/peers/setup.py feast``):

    bench/.venvs/feast/bin/python bench/peers/feast_training.py \
        --data DIR --out OUT.parquet [--repeats N] [--filter-by-created-timestamp]

``DIR/spec.json`` names the entity, the entity rows and the feature views::

    {"entity": {"name": "carrier", "join_keys": ["carrier"], "value_type": "string"|"int64"},
     "entity_rows": {"path": "entities.parquet", "time": "event_timestamp"},
     "views": [{"name": "carrier_stats", "path": "carrier_stats.parquet",
                "event_time": "event_ts", "created_time": "created_ts" | null,
                "ttl_seconds": 86400, "features": ["f1", "f2"]}]}

Set-up, not timed: a throwaway Feast repo in a temp dir built in code (``RepoConfig``: provider
``local``, offline store ``file`` (Feast's Dask store), online store ``sqlite`` and a file
registry in the temp dir, ``entity_key_serialization_version`` 3, Feast's current default), one
``Entity`` per join key, one ``FileSource`` (``timestamp_field`` = the view's event time,
``created_timestamp_column`` = its created time) and one ``FeatureView`` (``ttl``) per view over
the Parquet files where they are, ``store.apply``; the entity rows are read with pandas.

Timed, per repeat: ``store.get_historical_features(entity_df=..., features=["view:f", ...],
full_feature_names=True).to_df()`` and nothing else (``--filter-by-created-timestamp`` adds
``filter_by_created_timestamp=True``, Feast's opt-in ``created <= entity time`` cutoff, PR #6617).
``entity_df`` holds the join keys, the entity time (renamed to ``event_timestamp``, the name Feast
looks for, if it is called otherwise) and ``_row``; Feast carries every ``entity_df`` column
through.

Output: ``OUT.parquet`` with ``_row``, the join keys, the entity time (its spec name) and one
column per feature, ``{view}__{feature}`` (what ``full_feature_names=True`` yields), holding
exactly the rows Feast returned, in Feast's order (not re-sorted, not filled in): Feast's file
store sorts by entity time, drops entity rows whose key has feature rows but none inside
``[t - ttl, t]``, and collapses entity rows sharing (join keys, entity time). Compare by ``_row``.

Prints one JSON line, the last line of stdout: ``{"tool": "feast", "version", "seconds": [per
repeat], "peak_rss_mib" (VmHWM), "rows_out", "rows_in", ...}``; on a Feast error the same line
carries ``"error"`` and the exit code is 1. Feast's own prints go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import stdout_to_stderr  # noqa: E402

os.environ.setdefault("FEAST_USAGE", "False")  # no usage telemetry

FEAST_TS = "event_timestamp"  # the entity_df column name Feast looks for


def feast_version() -> str:
    try:
        from importlib.metadata import version

        return version("feast")
    except Exception:  # pragma: no cover - only when feast is missing
        return "unknown"


def peak_rss_mib() -> float | None:
    """VmHWM of this process, MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


def load_spec(data_dir: Path) -> dict[str, Any]:
    spec = json.loads((data_dir / "spec.json").read_text())
    ent = spec["entity"]
    if not ent.get("join_keys"):
        ent["join_keys"] = [ent["name"]]
    for view in spec["views"]:
        view.setdefault("created_time", None)
        view.setdefault("ttl_seconds", None)
    return spec


def _feast_dtype(arrow_type: Any) -> Any:
    """Feast type of a Parquet column's Arrow type."""
    import pyarrow as pa
    from feast import types as ft

    if pa.types.is_float64(arrow_type):
        return ft.Float64
    if pa.types.is_float32(arrow_type):
        return ft.Float32
    if pa.types.is_int64(arrow_type):
        return ft.Int64
    if pa.types.is_integer(arrow_type):
        return ft.Int32
    if pa.types.is_boolean(arrow_type):
        return ft.Bool
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ft.String
    if pa.types.is_timestamp(arrow_type):
        return ft.UnixTimestamp
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return ft.Bytes
    if pa.types.is_dictionary(arrow_type):
        return _feast_dtype(arrow_type.value_type)
    raise ValueError(f"no Feast type for Arrow type {arrow_type}")


def _key_value_type(name: str, spec_type: str | None, arrow_type: Any) -> Any:
    from feast import ValueType

    if spec_type:
        return {"string": ValueType.STRING, "int64": ValueType.INT64}[spec_type]
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return ValueType.INT64
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ValueType.STRING
    raise ValueError(f"join key {name!r}: unsupported type {arrow_type}")


def build_store(
    spec: dict[str, Any],
    data_dir: Path,
    repo_dir: Path,
    online_store: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A Feast FeatureStore over the spec's Parquet files, applied; (store, {view: FeatureView})."""
    import pyarrow.parquet as pq
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.repo_config import RepoConfig

    config = RepoConfig(
        project="bench",
        provider="local",
        registry={"registry_type": "file", "path": str(repo_dir / "registry.db")},
        online_store=online_store or {"type": "sqlite", "path": str(repo_dir / "online.db")},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=repo_dir,
    )
    store = FeatureStore(config=config)

    ent = spec["entity"]
    join_keys: list[str] = list(ent["join_keys"])
    first_schema = pq.read_schema(data_dir / spec["views"][0]["path"])
    # Feast entities have one join key each: a composite key is one Entity per column.
    if len(join_keys) == 1:
        key_type = _key_value_type(
            join_keys[0], ent.get("value_type"), first_schema.field(join_keys[0]).type
        )
        entities = [Entity(name=ent["name"], join_keys=join_keys, value_type=key_type)]
    else:
        entities = [
            Entity(
                name=f"{ent['name']}__{k}",
                join_keys=[k],
                value_type=_key_value_type(k, None, first_schema.field(k).type),
            )
            for k in join_keys
        ]

    objects: list[Any] = list(entities)
    views: dict[str, Any] = {}
    for v in spec["views"]:
        path = (data_dir / v["path"]).resolve()
        schema = pq.read_schema(path)
        source = FileSource(
            name=f"{v['name']}__source",
            path=str(path),
            timestamp_field=v["event_time"],
            created_timestamp_column=v.get("created_time") or "",
        )
        fields = [Field(name=k, dtype=_feast_dtype(schema.field(k).type)) for k in join_keys]
        fields += [Field(name=f, dtype=_feast_dtype(schema.field(f).type)) for f in v["features"]]
        ttl = v.get("ttl_seconds")
        fv = FeatureView(
            name=v["name"],
            entities=entities,
            ttl=timedelta(seconds=ttl) if ttl else timedelta(0),
            schema=fields,
            source=source,
            online=True,
        )
        objects += [source, fv]
        views[v["name"]] = fv
    store.apply(objects)
    return store, views


def feature_refs(spec: dict[str, Any]) -> list[str]:
    return [f"{v['name']}:{f}" for v in spec["views"] for f in v["features"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", required=True, type=Path, help="directory holding spec.json")
    ap.add_argument("--out", required=True, type=Path, help="output Parquet file")
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats (default 1)")
    ap.add_argument(
        "--filter-by-created-timestamp",
        dest="filter_by_created",
        action="store_true",
        help="pass filter_by_created_timestamp=True (exclude values created after the entity time)",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    rec: dict[str, Any] = {"tool": "feast", "version": feast_version(), "seconds": []}
    try:
        with stdout_to_stderr():
            rec.update(run(args))
        code = 0
    except Exception as exc:  # report, don't crash without the JSON line
        traceback.print_exc(file=sys.stderr)
        rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        code = 1
    rec["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()
    return code


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    data_dir: Path = args.data.resolve()
    spec = load_spec(data_dir)
    join_keys = list(spec["entity"]["join_keys"])
    time_col = spec["entity_rows"]["time"]
    refs = feature_refs(spec)

    entities = pd.read_parquet(data_dir / spec["entity_rows"]["path"])
    entity_df = entities[[*join_keys, time_col, "_row"]]
    if time_col != FEAST_TS:
        entity_df = entity_df.rename(columns={time_col: FEAST_TS})
    out: dict[str, Any] = {"rows_in": len(entity_df), "features": len(refs)}
    out["filter_by_created_timestamp"] = args.filter_by_created

    with tempfile.TemporaryDirectory(prefix="feast_training_") as tmp:
        t0 = time.perf_counter()
        store, _ = build_store(spec, data_dir, Path(tmp))
        out["setup_seconds"] = round(time.perf_counter() - t0, 4)

        result = None
        for i in range(args.repeats):
            result = None
            gc.collect()
            t0 = time.perf_counter()
            kwargs = {"filter_by_created_timestamp": True} if args.filter_by_created else {}
            result = store.get_historical_features(
                entity_df=entity_df, features=refs, full_feature_names=True, **kwargs
            ).to_df()
            dt = time.perf_counter() - t0
            out.setdefault("seconds", []).append(round(dt, 6))
            print(f"[feast] repeat {i + 1}/{args.repeats}: {dt:.3f}s, {len(result)} rows")

    assert result is not None
    if time_col != FEAST_TS:
        result = result.rename(columns={FEAST_TS: time_col})
    feature_cols = [f"{v['name']}__{f}" for v in spec["views"] for f in v["features"]]
    missing = [c for c in ["_row", *join_keys, time_col, *feature_cols] if c not in result.columns]
    if missing:
        raise RuntimeError(f"Feast output lacks columns {missing}; has {list(result.columns)}")
    result = result[["_row", *join_keys, time_col, *feature_cols]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.to_parquet(args.out, index=False)
    out["rows_out"] = len(result)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
