"""Training sets (point-in-time joins): headrace vs a plain Polars ``join_asof`` vs Feast.

    .venv/bin/python bench/training_set.py                      # 1 M feature rows x 100 k entities
    .venv/bin/python bench/training_set.py --feature-rows 10000000 --entity-rows 1000000 \\
        --views 3 --sides headrace,floor                       # the large case (Feast cannot)
    .venv/bin/python bench/training_set.py --smoke             # CI: headrace only, tiny

Same data for every side, generated once (seeded) under ``bench/data/training_*``: per view a
Parquet file of ``key`` (int64), ``event_ts``, ``created_ts`` (UTC) and ``--features`` float
columns; ties on event time are planted (1 % of rows repeat an earlier row's key and time with
a later created time); entity rows draw keys from 110 % of the key range (so some have no
history at all) and times from the same year. TTL 7 days.

Sides, each in a fresh interpreter (``--rounds`` of them, sides alternating) that times
``--repeats`` calls in a row, the first one included; the median of all calls is reported:

- ``headrace``: a project (prepared once, not timed: the pipeline computes the views'
  offline datasets) and, timed, ``project.features.get_training_data(entities, "bench")``.
- ``floor``: the hand-written minimum in Polars: read each view's Parquet columns, sort,
  ``join_asof(by="key", strategy="backward", tolerance=ttl)``, restore the input order.
- ``feast``: ``bench/peers/feast_training.py`` in ``bench/.venvs/feast`` (Feast's file offline
  store) on the same Parquet files.

Peak RSS is the child's ``VmHWM``. Results are compared row by row by ``_row``: the number of
rows each side returns, and how many agree with headrace's (every feature equal, nulls equal).
The last stdout line of a child is JSON; results go to ``bench/results/training_set-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _runner import fmt, run_child  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TTL = timedelta(days=7)
YEAR_S = 365 * 86400
SIDES = ("headrace", "floor", "feast")


# -- data ------------------------------------------------------------------------------------


def generate(folder: Path, feature_rows: int, entity_rows: int, views: int, features: int,
             keys: int) -> Path:  # fmt: skip
    """Write the Parquet files and spec.json (reused when the same sizes exist)."""
    spec_path = folder / "spec.json"
    if spec_path.exists():
        return spec_path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(13)
    spec_views = []
    for v in range(views):
        n = feature_rows
        key = rng.integers(0, keys, n)
        seconds = rng.integers(0, YEAR_S, n)
        tied = rng.random(n) < 0.01  # plant ties: repeat an earlier row's key and time
        source = np.maximum(np.arange(n) - rng.integers(1, 1000, n), 0)
        key = np.where(tied, key[source], key)
        seconds = np.where(tied, seconds[source], seconds)
        created = seconds + rng.integers(0, 7200, n) + np.where(tied, 3600, 0)
        frame = pl.DataFrame(
            {
                "key": key.astype(np.int64),
                "event_ts": _times(seconds),
                "created_ts": _times(created),
                **{f"f{v}_{i}": rng.normal(size=n) for i in range(features)},
            }
        )
        name = f"view{v}"
        frame.write_parquet(folder / f"{name}.parquet")
        spec_views.append(
            {
                "name": name,
                "path": f"{name}.parquet",
                "event_time": "event_ts",
                "created_time": "created_ts",
                "ttl_seconds": int(TTL.total_seconds()),
                "features": [f"f{v}_{i}" for i in range(features)],
            }
        )
    entities = pl.DataFrame(
        {
            "_row": np.arange(entity_rows, dtype=np.int64),
            "key": rng.integers(0, int(keys * 1.1), entity_rows).astype(np.int64),
            "event_timestamp": _times(rng.integers(0, YEAR_S, entity_rows)),
        }
    )
    entities.write_parquet(folder / "entities.parquet")
    spec = {
        "entity": {"name": "thing", "join_keys": ["key"], "value_type": "int64"},
        "entity_rows": {"path": "entities.parquet", "time": "event_timestamp"},
        "views": spec_views,
    }
    spec_path.write_text(json.dumps(spec, indent=2))
    return spec_path


def _times(seconds: np.ndarray) -> pl.Series:
    micros = pl.Series(seconds.astype(np.int64) * 1_000_000) + int(T0.timestamp() * 1_000_000)
    return micros.cast(pl.Datetime("us", "UTC"))


# -- children --------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pipeline(spec: dict[str, Any], folder: Path) -> Any:
    import headrace as hr

    pipeline = hr.Pipeline("bench")
    entity = hr.Entity("thing", ["key"])
    refs = []
    for view in spec["views"]:
        path = str(folder / view["path"])
        pipeline.source(lambda path=path: pl.scan_parquet(path), name=f"{view['name']}_rows")
        pipeline.features(
            hr.FeatureView(
                view["name"],
                entity=entity,
                source=f"{view['name']}_rows",
                event_time=view["event_time"],
                created_time=view["created_time"],
                ttl=timedelta(seconds=view["ttl_seconds"]),
                features=[hr.Feature(f, pl.col(f)) for f in view["features"]],
            )
        )
        refs += [f"{view['name']}:{f}" for f in view["features"]]
    pipeline.feature_set(hr.FeatureSet("bench", refs))
    return pipeline


def child_prepare(folder: Path) -> dict[str, Any]:
    """Build the headrace project once (not timed): the views' offline datasets."""
    import headrace as hr

    spec = json.loads((folder / "spec.json").read_text())
    project_dir = folder / "project"
    if (project_dir / "ready").exists():
        return {"prepared": False}
    shutil.rmtree(project_dir, ignore_errors=True)
    started = time.perf_counter()
    with hr.Project.create(project_dir) as project:
        project.run(_pipeline(spec, folder)).raise_for_status()
    (project_dir / "ready").write_text("ok")
    return {"prepared": True, "seconds": time.perf_counter() - started}


def child_headrace(folder: Path, out: Path, repeats: int, budget_mb: int | None) -> dict[str, Any]:
    import headrace as hr

    spec = json.loads((folder / "spec.json").read_text())
    entities = pl.read_parquet(folder / "entities.parquet")
    with hr.Project(folder / "project") as project:
        project.features.register(_pipeline(spec, folder))
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            built = project.features.get_training_data(
                entities, "bench", memory_budget=budget_mb << 20 if budget_mb else None
            )
            seconds.append(time.perf_counter() - started)
        built.frame.write_parquet(out)
        return {
            "tool": "headrace",
            "seconds": seconds,
            "peak_rss_mib": _peak_rss_mib(),
            "rows_out": built.frame.height,
            "buckets": built.stats.buckets,
        }


def child_floor(folder: Path, out: Path, repeats: int) -> dict[str, Any]:
    """The hand-written minimum, ``repeats`` times in this process."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        frame = _floor(folder)
        seconds.append(time.perf_counter() - started)
    frame.write_parquet(out)
    return {
        "tool": "polars join_asof",
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "rows_out": frame.height,
    }


def _floor(folder: Path) -> pl.DataFrame:
    """One sort + join_asof per view over the Parquet files, input order restored."""
    spec = json.loads((folder / "spec.json").read_text())
    entities = pl.read_parquet(folder / "entities.parquet")
    left = entities.sort("event_timestamp")
    for view in spec["views"]:
        right = (
            pl.scan_parquet(folder / view["path"])
            .select("key", "event_ts", "created_ts", *view["features"])
            .collect()
            .sort("event_ts", "created_ts", maintain_order=True)  # full ties: the last read
        )
        left = left.join_asof(
            right.drop("created_ts"),
            left_on="event_timestamp",
            right_on="event_ts",
            by="key",
            strategy="backward",
            tolerance=timedelta(seconds=view["ttl_seconds"]),
            check_sortedness=False,
        ).drop("event_ts")
        del right
    return left.sort("_row")


# -- comparing -------------------------------------------------------------------------------


def agreement(reference: Path, other: Path, spec: dict[str, Any], renames: bool) -> dict[str, int]:
    """Rows of ``other`` whose features equal headrace's (by ``_row``), and the rest."""
    ours = pl.read_parquet(reference)
    theirs = pl.read_parquet(other)
    columns = []
    for view in spec["views"]:
        for f in view["features"]:
            columns.append((f"{view['name']}__{f}", f"{view['name']}__{f}" if renames else f))
    ours = ours.with_row_index("_row") if "_row" not in ours.columns else ours
    mine = ours.select("_row", *[pl.col(a).alias(f"a{i}") for i, (a, _) in enumerate(columns)])
    them = theirs.select("_row", *[pl.col(b).alias(f"b{i}") for i, (_, b) in enumerate(columns)])
    joined = mine.join(them, on="_row", how="inner")
    same = pl.all_horizontal(
        pl.col(f"a{i}").eq_missing(pl.col(f"b{i}").cast(pl.Float64)) for i in range(len(columns))
    )
    equal = int(joined.select(same.sum()).item())
    differing = joined.filter(~same).select("_row")
    return {
        "rows_different_on_ties": _on_ties(differing, spec, reference.parent),
        "rows": theirs.height,
        "rows_missing": ours.height - joined.height,
        "rows_equal": equal,
        "rows_different": joined.height - equal,
        "duplicated_rows": theirs.height - theirs["_row"].n_unique(),
    }


def _on_ties(rows: pl.DataFrame, spec: dict[str, Any], folder: Path) -> int:
    """How many of ``rows`` (by ``_row``) pick, in some view, an event time shared by 2+ rows."""
    if rows.is_empty():
        return 0
    entities = pl.read_parquet(folder / "entities.parquet").join(rows, on="_row")
    entities = entities.sort("event_timestamp")
    tied = pl.Series("tied", [False] * entities.height)
    for view in spec["views"]:
        counts = (
            pl.read_parquet(folder / view["path"], columns=["key", "event_ts"])
            .group_by("key", "event_ts")
            .len()
            .sort("event_ts")
        )
        picked = entities.join_asof(
            counts, left_on="event_timestamp", right_on="event_ts", by="key",
            strategy="backward", check_sortedness=False,
        )  # fmt: skip
        tied = tied | (picked["len"].fill_null(0) > 1)
    return int(tied.sum())


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--feature-rows", type=int, default=1_000_000, help="rows per view")
    ap.add_argument("--entity-rows", type=int, default=100_000)
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--features", type=int, default=4, help="features per view")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per process")
    ap.add_argument("--rounds", type=int, default=1, help="fresh processes per side")
    ap.add_argument(
        "--memory-budget-mb", type=int, help="headrace's budget (default: the project's 2048)"
    )
    ap.add_argument("--sides", default="headrace,floor,feast")
    ap.add_argument("--smoke", action="store_true", help="CI: headrace only, tiny data")
    ap.add_argument("--child", choices=("prepare", "headrace", "floor"), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        children = {
            "prepare": lambda: child_prepare(args.data),
            "headrace": lambda: child_headrace(
                args.data, args.out, args.repeats, args.memory_budget_mb
            ),
            "floor": lambda: child_floor(args.data, args.out, args.repeats),
        }
        record = children[args.child]()
        print(json.dumps(record))
        return 0
    if args.smoke:
        args.feature_rows, args.entity_rows, args.keys, args.repeats = 20_000, 2_000, 500, 1
        args.sides = "headrace,floor"
    sides = [s for s in args.sides.split(",") if s]
    if any(s not in SIDES for s in sides):
        ap.error(f"--sides: choose from {', '.join(SIDES)}")
    label = f"f{args.feature_rows}_e{args.entity_rows}_v{args.views}_k{args.keys}"
    tag = label + (f"_budget{args.memory_budget_mb}" if args.memory_budget_mb else "")
    folder = HERE / "data" / f"training_{label}_c{args.features}"
    if args.smoke:
        folder = Path(tempfile.mkdtemp(prefix="headrace-training-smoke-"))
    print(f"data {folder} ...", flush=True)
    spec_path = generate(folder, args.feature_rows, args.entity_rows, args.views,
                         args.features, args.keys)  # fmt: skip
    spec = json.loads(spec_path.read_text())
    me = [sys.executable, str(Path(__file__).resolve())]
    logs = folder / "logs"
    prepared = run_child([*me, "--child", "prepare", "--data", str(folder)],
                         log=logs / "prepare.log", timeout=7200)  # fmt: skip
    if "error" in prepared:
        print(prepared["error"])
        return 1
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    outs = {s: folder / f"out_{s}.parquet" for s in sides}
    reps = ["--repeats", str(args.repeats)]
    for round_ in range(args.rounds):
        for side in sides:
            print(f"round {round_ + 1}/{args.rounds}: {side} x{args.repeats} ...", flush=True)
            if side == "feast":
                python = HERE / ".venvs" / "feast" / "bin" / "python"
                cmd = [str(python), str(HERE / "peers" / "feast_training.py"),
                       "--data", str(folder), "--out", str(outs[side]), *reps]  # fmt: skip
            else:
                cmd = [*me, "--child", side, "--data", str(folder), "--out", str(outs[side]),
                       *reps]  # fmt: skip
                if side == "headrace" and args.memory_budget_mb:
                    cmd += ["--memory-budget-mb", str(args.memory_budget_mb)]
            record = run_child(cmd, log=logs / f"{side}-{round_}.log", timeout=3600)
            runs[side].append(record)
            if "error" in record:
                print(f"  {side} failed: {record['error'][:400]}")
    summary = []
    for side in sides:
        ok = [r for r in runs[side] if "error" not in r]
        seconds = [s for r in ok for s in r["seconds"]]
        summary.append(
            {
                "side": side,
                "median_s": statistics.median(seconds) if seconds else None,
                "peak_rss_mib": max((r["peak_rss_mib"] for r in ok), default=None),
                "rows_out": ok[0]["rows_out"] if ok else None,
                "version": ok[0].get("version") if ok else None,
                "error": None if ok else runs[side][0].get("error"),
            }
        )
    base = {s["side"]: s for s in summary}
    ours = base.get("headrace", {}).get("median_s")
    for row in summary:
        row["x_headrace"] = (row["median_s"] / ours) if (row["median_s"] and ours) else None
        if row["side"] != "headrace" and row["median_s"] and "headrace" in base:
            row["agreement"] = agreement(outs["headrace"], outs[row["side"]], spec,
                                         renames=row["side"] == "feast")  # fmt: skip
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "sizes": {"feature_rows_per_view": args.feature_rows, "entity_rows": args.entity_rows,
                  "views": args.views, "features_per_view": args.features, "keys": args.keys},
        "repeats": args.repeats,
        "memory_budget_mb": args.memory_budget_mb,
        "prepare": prepared,
        "summary": summary,
        "runs": runs,
    }  # fmt: skip
    print(
        f"\n{'side':<10} {'median s':>9} {'peak MiB':>9} {'rows':>10} {'x headrace':>10}  agreement"
    )
    for row in summary:
        agree = row.get("agreement")
        text = "" if not agree else (
            f"{agree['rows_equal']:,} equal, {agree['rows_different']:,} differ "
            f"({agree['rows_different_on_ties']:,} on tied event times), "
            f"{agree['rows_missing']:,} missing")  # fmt: skip
        print(f"{row['side']:<10} {fmt(row['median_s'], '.3f'):>9} "
              f"{fmt(row['peak_rss_mib'], '.0f'):>9} {row['rows_out'] or '-':>10} "
              f"{fmt(row['x_headrace'], '.1f'):>10}  {text}")  # fmt: skip
    if not args.smoke:
        out = HERE / "results" / f"training_set-{datetime.now(UTC):%Y-%m-%d}-{tag}.json"
        out.write_text(json.dumps(result, indent=2, default=str))
        print(f"results written to {out}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        floor = base.get("floor", {})
        agree = floor.get("agreement") or {}
        if base["headrace"]["median_s"] is None or agree.get("rows_different", 1) != 0:
            print("smoke: headrace failed or disagrees with the plain join_asof")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
