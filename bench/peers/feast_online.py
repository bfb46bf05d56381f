"""Feast side of the online-lookup latency comparison.

Run in bench/.venvs/feast (``python bench/peers/setup.py feast``):

    bench/.venvs/feast/bin/python bench/peers/feast_online.py --data DIR \
        [--store sqlite|redis] [--redis-db 15] \
        [--entities 1,10,100] [--features 10,50] [--requests 2000]

``DIR/spec.json`` is the training comparison's spec (see ``feast_training.py``). Set-up, not
timed: the same throwaway Feast repo (``feast_training.build_store``) with the online store
either Feast's SQLite store in the temp dir or Redis at 127.0.0.1:6379 (``--store redis``),
database ``--redis-db`` (only 15 is accepted: the script FLUSHDBs it before writing and again
when done, and touches no other database). For each view, the last row per entity (greatest
event time, then created time, then file order) is written with
``store.write_to_online_store(view, df)`` (the time this takes is reported, not part of the
latency); a sample of keys is then read back and checked against those rows.

Timed, per grid cell (entities per request E x features K) and per request:
``store.get_online_features(features=refs, entity_rows=[{key: v}, ...],
full_feature_names=True).to_dict()`` (full names, so that equal feature names in two views
cannot collide) with
``time.perf_counter_ns`` around that call only. ``refs`` are the first K features taken across
the views in spec order (``view:feature``); a cell whose K exceeds the number of features in
the spec is reported as skipped with the reason. Each request asks for E distinct keys drawn at
random (fixed seed, drawn before timing) from the keys that were written; 20 untimed warm-up
requests run first in each cell.

Prints one JSON line, the last line of stdout: ``{"tool": "feast", "store", "version",
"cells": [{"entities", "features", "p50_ms", "p99_ms", "n", ...} | {"entities", "features",
"skipped": reason}], ...}``; on a Feast error the line carries ``"error"`` and the exit code
is 1. Feast's own prints go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import stdout_to_stderr  # noqa: E402
from feast_training import build_store, feast_version, load_spec, peak_rss_mib  # noqa: E402

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
ALLOWED_REDIS_DB = 15
WARMUP = 20
VERIFY_KEYS = 50


def int_list(text: str) -> list[int]:
    vals = [int(x) for x in text.split(",") if x.strip()]
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def percentile(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    rank = math.ceil(q / 100.0 * len(sorted_vals))
    return sorted_vals[max(0, min(len(sorted_vals), rank) - 1)]


def last_rows(df: Any, keys: list[str], event_time: str, created: str | None) -> Any:
    """The last row per key: greatest event time, then created time, then file order."""
    order = [event_time] + ([created] if created else [])
    df = df.reset_index(drop=True)
    df["__pos"] = range(len(df))
    df = df.sort_values([*order, "__pos"], kind="stable")
    return df.drop_duplicates(keys, keep="last").drop(columns="__pos").reset_index(drop=True)


def flush_redis(db: int) -> None:
    import redis

    if db != ALLOWED_REDIS_DB:
        raise ValueError(f"refusing to FLUSHDB Redis database {db}: only {ALLOWED_REDIS_DB}")
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    client.close()


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    return bool(a == b)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    data_dir: Path = args.data.resolve()
    spec = load_spec(data_dir)
    join_keys = list(spec["entity"]["join_keys"])
    all_refs = [(v["name"], f) for v in spec["views"] for f in v["features"]]
    out: dict[str, Any] = {"features_available": len(all_refs)}

    if args.store == "redis":
        online = {
            "type": "redis",
            "connection_string": f"{REDIS_HOST}:{REDIS_PORT},db={args.redis_db}",
        }
        out["redis_db"] = args.redis_db
        flush_redis(args.redis_db)
    else:
        online = None  # build_store's default: SQLite in the temp dir

    with tempfile.TemporaryDirectory(prefix="feast_online_") as tmp:
        t0 = time.perf_counter()
        store, _ = build_store(spec, data_dir, Path(tmp), online_store=online)
        out["setup_seconds"] = round(time.perf_counter() - t0, 4)

        # Write the last row per entity of each view.
        expected: dict[str, dict[tuple, dict[str, Any]]] = {}
        key_sets: list[set] = []
        write_s = 0.0
        rows_written = 0
        for v in spec["views"]:
            cols = [*join_keys, v["event_time"]]
            if v.get("created_time"):
                cols.append(v["created_time"])
            cols += v["features"]
            df = pd.read_parquet(data_dir / v["path"], columns=cols)
            df = last_rows(df, join_keys, v["event_time"], v.get("created_time"))
            t0 = time.perf_counter()
            store.write_to_online_store(v["name"], df=df)
            write_s += time.perf_counter() - t0
            rows_written += len(df)
            recs = df[join_keys + v["features"]].to_dict("records")
            expected[v["name"]] = {tuple(r[k] for k in join_keys): r for r in recs}
            key_sets.append(set(expected[v["name"]]))
        out["write_seconds"] = round(write_s, 4)
        out["rows_written"] = rows_written

        # Keys to ask for: those written in the first view (they have values there).
        keys = sorted(key_sets[0], key=repr)
        out["keys_available"] = len(keys)

        def entity_rows(ks: list[tuple]) -> list[dict[str, Any]]:
            return [{k: _py(val) for k, val in zip(join_keys, key, strict=True)} for key in ks]

        # Read back a sample and compare with the rows written.
        rng = random.Random(1234)
        sample = rng.sample(keys, min(VERIFY_KEYS, len(keys)))
        refs = [f"{view}:{feat}" for view, feat in all_refs]
        got = store.get_online_features(
            features=refs, entity_rows=entity_rows(sample), full_feature_names=True
        ).to_dict()
        mismatches = 0
        for i, key in enumerate(sample):
            for view, feat in all_refs:
                want = expected[view].get(key, {}).get(feat)
                if not same(got[f"{view}__{feat}"][i], _py(want)):
                    mismatches += 1
        out["verified_keys"] = len(sample)
        out["verify_mismatches"] = mismatches
        if mismatches:
            raise RuntimeError(f"online read-back: {mismatches} values differ from rows written")

        cells: list[dict[str, Any]] = []
        for n_ent in args.entities:
            for n_feat in args.features:
                cell: dict[str, Any] = {"entities": n_ent, "features": n_feat}
                if n_feat > len(all_refs):
                    cell["skipped"] = (
                        f"spec has {len(all_refs)} features in total, fewer than {n_feat}"
                    )
                    cells.append(cell)
                    continue
                cell_refs = refs[:n_feat]
                cell["views"] = len({r.split(":", 1)[0] for r in cell_refs})
                if n_ent > len(keys):
                    cell["keys_with_replacement"] = True
                requests = []
                for _ in range(WARMUP + args.requests):
                    if n_ent <= len(keys):
                        ks = rng.sample(keys, n_ent)
                    else:
                        ks = rng.choices(keys, k=n_ent)
                    requests.append(entity_rows(ks))
                for rows in requests[:WARMUP]:
                    store.get_online_features(
                        features=cell_refs, entity_rows=rows, full_feature_names=True
                    ).to_dict()
                gc.collect()
                lat_ns: list[int] = []
                for rows in requests[WARMUP:]:
                    t0 = time.perf_counter_ns()
                    store.get_online_features(
                        features=cell_refs, entity_rows=rows, full_feature_names=True
                    ).to_dict()
                    lat_ns.append(time.perf_counter_ns() - t0)
                ms = sorted(x / 1e6 for x in lat_ns)
                cell.update(
                    p50_ms=round(percentile(ms, 50), 4),
                    p99_ms=round(percentile(ms, 99), 4),
                    mean_ms=round(statistics.fmean(ms), 4),
                    n=len(ms),
                )
                print(
                    f"[feast] {args.store} E={n_ent} K={n_feat}: p50 {cell['p50_ms']} ms, "
                    f"p99 {cell['p99_ms']} ms"
                )
                cells.append(cell)
        out["cells"] = cells

    if args.store == "redis":
        flush_redis(args.redis_db)
    return out


def _py(val: Any) -> Any:
    """numpy scalar -> Python scalar (Feast's entity rows and proto conversion want these)."""
    if hasattr(val, "item") and not isinstance(val, (str, bytes)):
        try:
            return val.item()
        except (ValueError, AttributeError):
            return val
    try:
        import pandas as pd

        if val is not None and not isinstance(val, str) and pd.isna(val):
            return None
    except (TypeError, ValueError):
        pass
    return val


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", required=True, type=Path, help="directory holding spec.json")
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    ap.add_argument(
        "--redis-db",
        type=int,
        default=ALLOWED_REDIS_DB,
        help=f"Redis database number (default and only accepted value: {ALLOWED_REDIS_DB})",
    )
    ap.add_argument("--entities", type=int_list, default=[1, 10, 100])
    ap.add_argument("--features", type=int_list, default=[10, 50])
    ap.add_argument("--requests", type=int, default=2000, help="timed requests per grid cell")
    args = ap.parse_args(argv)
    if args.requests < 1:
        ap.error("--requests must be >= 1")
    if args.store == "redis" and args.redis_db != ALLOWED_REDIS_DB:
        ap.error(f"--redis-db: only {ALLOWED_REDIS_DB} may be flushed by this benchmark")

    rec: dict[str, Any] = {"tool": "feast", "store": args.store, "version": feast_version()}
    try:
        with stdout_to_stderr():
            rec.update(run(args))
        code = 0
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        rec.setdefault("cells", [])
        code = 1
    rec["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
