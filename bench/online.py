"""Online serving: lookup latency (in process and over HTTP) and materialisation, vs Feast.

    .venv/bin/python bench/online.py                      # full run (~6 min), Feast included
    .venv/bin/python bench/online.py --sides headrace,http  # no Feast
    .venv/bin/python bench/online.py --requests 500 --big-keys 0   # quick look, no 1 M case
    .venv/bin/python bench/online.py --smoke              # CI: headrace, SQLite, tiny (< 30 s)

Data, seeded, generated once under ``bench/data/online_*`` (regenerated when older than
``--max-age-days``, so that nothing has expired at lookup time): per view a Parquet file of
``key`` (int64), ``event_ts`` and ``created_ts`` (UTC, within the day before generation) and
float features ``f{view}_{i}``, ``--rows-per-key`` rows per key in shuffled order, plus a
``spec.json`` in the format of ``bench/peers/feast_training.py`` (which Feast's
``feast_online.py`` reads, so both sides read the same files). The latency data: 2 views x 30
features, 10,000 keys, TTL 30 days. The materialisation case: one view x 10 features,
1,000,000 keys.

headrace side: a project in ``DATA/pristine`` (``headrace.toml`` + a generated
``pipeline.py``: one source node per view scanning its Parquet, one ``hr.FeatureView`` per
view of identity ``hr.Feature(f, pl.col(f))`` features, feature sets ``f10`` = the first 10
features of view0 and ``f50`` = view0's 30 + view1's first 20, the same columns Feast's script
takes for K=10 and K=50), run once (not timed). Each full run copies it to ``DATA/project``,
so materialisation always starts from an empty online store. Then, each in a fresh child
process (``_runner.run_child``):

1. materialisation: ``project.features.materialize()`` into SQLite (the default, in the state
   folder) and into Redis (``HEADRACE_FEATURES_ONLINE_STORE=redis://127.0.0.1:6379/15``: database
   15 only, FLUSHDB before and after; keys under ``headrace:online_bench:``). Timed: that call
   only (the pipeline module is loaded and the store opened before). Reported: entities written
   per second (summed over views) and the child's peak RSS (``VmHWM``).
2. latency in process: per grid cell (E entities per request x K features) ``--warmup``
   untimed, then ``--requests`` timed ``project.features.get_online_features("fK", [{"key":
   k}, ...])`` calls with E distinct random keys (drawn before timing); every value must come
   back ``present`` and a sample is checked against the newest Parquet row per key.
3. latency over HTTP: ``headrace serve --project DIR --port P`` on a free loopback port (a
   subprocess of this script, stopped by its PID at the end); this process sends the same
   requests on one keep-alive ``http.client.HTTPConnection`` and times each one: send, full
   response read and ``json.loads``.
4. Feast (``--sides feast``): ``bench/peers/feast_online.py`` in ``bench/.venvs/feast`` for
   SQLite and Redis (db 15) on the same data and grid (20 warm-up requests; see its docstring).

Percentiles are nearest-rank, as in Feast's script. Targets (product brief): in process p99
<= 1 ms (1 entity x 50 features); HTTP p99 <= 5 ms (1 entity) and <= 20 ms (100 x 50).
Results: ``bench/results/online-<date>.json``.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
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

REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_DB = 15  # the only database this benchmark touches (and flushes)
STORE_ENV = "HEADRACE_FEATURES_ONLINE_STORE"
TTL = timedelta(days=30)
DAY_S = 86_400
ENTITIES = (1, 10, 100)
FEATURES = (10, 50)
VERIFY_KEYS = 50
TARGETS = (
    # (label, mode, entities, features, p99 limit ms)
    ("in process p99 <= 1 ms (1 x 50)", "inproc", 1, 50, 1.0),
    ("HTTP p99 <= 5 ms (1 x 10)", "http", 1, 10, 5.0),
    ("HTTP p99 <= 5 ms (1 x 50)", "http", 1, 50, 5.0),
    ("HTTP p99 <= 20 ms (100 x 50)", "http", 100, 50, 20.0),
)

PIPELINE = '''"""The online benchmark's pipeline (written by bench/online.py), from ../spec.json."""

import json
from datetime import timedelta
from pathlib import Path

import polars as pl

import headrace as hr

DATA = Path(__file__).resolve().parent.parent
SPEC = json.loads((DATA / "spec.json").read_text())

pipeline = hr.Pipeline("online_bench")
thing = hr.Entity("thing", ["key"])
refs = []
for view in SPEC["views"]:
    path = str(DATA / view["path"])
    pipeline.source(lambda path=path: pl.scan_parquet(path), name=view["name"] + "_rows")
    pipeline.features(
        hr.FeatureView(
            view["name"],
            entity=thing,
            source=view["name"] + "_rows",
            event_time=view["event_time"],
            created_time=view["created_time"],
            ttl=timedelta(seconds=view["ttl_seconds"]),
            features=[hr.Feature(f, pl.col(f)) for f in view["features"]],
        )
    )
    refs += [view["name"] + ":" + f for f in view["features"]]
for name, count in SPEC["feature_sets"].items():
    pipeline.feature_set(hr.FeatureSet(name, refs[:count]))
'''


# -- data ------------------------------------------------------------------------------------


def generate(folder: Path, *, keys: int, rows_per_key: int, views: int, features: int,
             max_age: timedelta) -> dict[str, Any]:  # fmt: skip
    """Write the Parquet files and spec.json; reused while younger than ``max_age``."""
    spec_path = folder / "spec.json"
    if spec_path.exists():
        spec = json.loads(spec_path.read_text())
        made = datetime.fromisoformat(spec["generated_at"])
        if datetime.now(UTC) - made < max_age:
            return spec  # type: ignore[no-any-return]
        print(f"  {folder.name}: data older than {max_age.days} days, regenerating", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    now = datetime.now(UTC).replace(microsecond=0)
    rng = np.random.default_rng(29)
    n = keys * rows_per_key
    spec_views = []
    for v in range(views):
        ago = rng.integers(60, DAY_S, n)  # seconds before `now`: all within the last day
        frame = pl.DataFrame(
            {
                "key": rng.permutation(np.repeat(np.arange(keys, dtype=np.int64), rows_per_key)),
                "event_ts": _times(now, -ago),
                "created_ts": _times(now, -ago + rng.integers(0, 50, n)),
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
    total = views * features
    spec = {
        "generated_at": now.isoformat(),
        "keys": keys,
        "rows_per_key": rows_per_key,
        "entity": {"name": "thing", "join_keys": ["key"], "value_type": "int64"},
        "views": spec_views,
        "feature_sets": {f"f{k}": k for k in FEATURES if k <= total} or {f"f{total}": total},
    }
    spec_path.write_text(json.dumps(spec, indent=2))
    return spec


def _times(now: datetime, offsets: np.ndarray) -> pl.Series:
    micros = pl.Series(offsets.astype(np.int64) * 1_000_000) + int(now.timestamp() * 1_000_000)
    return micros.cast(pl.Datetime("us", "UTC"))


def expected_rows(folder: Path, spec: dict[str, Any], sample: list[int]) -> dict[int, list[float]]:
    """The newest row per sampled key (greatest event, then created time), every feature."""
    out: dict[int, list[float]] = {k: [] for k in sample}
    for view in spec["views"]:
        frame = (
            pl.read_parquet(folder / view["path"])
            .filter(pl.col("key").is_in(sample))
            .sort("event_ts", "created_ts", maintain_order=True)
            .group_by("key", maintain_order=True)
            .last()
        )
        for row in frame.select("key", *view["features"]).rows():
            out[row[0]].extend(row[1:])
    return out


# -- children --------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_prepare(folder: Path) -> dict[str, Any]:
    """Write and run the project once (not timed): the views' offline datasets."""
    import headrace as hr

    project_dir = folder / "pristine"
    if (project_dir / "ready").exists():
        return {"prepared": False}
    shutil.rmtree(project_dir, ignore_errors=True)
    project_dir.mkdir()
    (project_dir / "headrace.toml").write_text(
        '[project]\nname = "online_bench"\npipelines = ["pipeline.py"]\n\n'
        "[quality]\nreports = false\n"
    )
    (project_dir / "pipeline.py").write_text(PIPELINE)
    started = time.perf_counter()
    with hr.Project(project_dir) as project:
        project.run().raise_for_status()
    (project_dir / "ready").write_text("ok")
    return {"prepared": True, "seconds": time.perf_counter() - started}


def _open(project_dir: Path, store: str) -> Any:
    import headrace as hr

    if store == "redis":
        os.environ[STORE_ENV] = REDIS_URL
    return hr.Project(project_dir)


def child_materialise(project_dir: Path, store: str) -> dict[str, Any]:
    """Time ``project.features.materialize()`` into an empty store."""
    with _open(project_dir, store) as project:
        features = project.features
        features.live_view_versions()  # loads the pipeline module, registers (not timed)
        described = features.online_store.describe()
        started = time.perf_counter()
        done = features.materialize()
        seconds = time.perf_counter() - started
        rows = sum(m.rows for m in done)
        return {
            "store": store,
            "online_store": described,
            "seconds": seconds,
            "rows": rows,
            "rows_per_s": rows / seconds,
            "views": [{"view": m.view, "rows": m.rows, "seconds": m.seconds} for m in done],
            "peak_rss_mib": _peak_rss_mib(),
        }


def requests_for(keys: int, entities: int, count: int, seed: int) -> list[list[dict[str, int]]]:
    """``count`` requests of ``entities`` distinct random keys each (drawn before timing)."""
    rng = random.Random(seed)
    population = range(keys)
    return [[{"key": k} for k in rng.sample(population, entities)] for _ in range(count)]


def child_latency(project_dir: Path, store: str, grid: dict[str, Any]) -> dict[str, Any]:
    """The grid in process: ``get_online_features`` per request, timed around that call."""
    folder = project_dir.parent
    spec = json.loads((folder / "spec.json").read_text())
    with _open(project_dir, store) as project:
        features = project.features
        described = features.online_store.describe()
        mismatches = _verify(features, folder, spec)
        cells = []
        for entities in grid["entities"]:
            for width in grid["features"]:
                name = f"f{width}"
                batches = requests_for(spec["keys"], entities, grid["warmup"] + grid["requests"],
                                       seed=entities * 1000 + width)  # fmt: skip
                for batch in batches[: grid["warmup"]]:
                    features.get_online_features(name, batch)
                gc.collect()
                lat_ns = []
                not_present = 0
                for batch in batches[grid["warmup"] :]:
                    started = time.perf_counter_ns()
                    found = features.get_online_features(name, batch)
                    lat_ns.append(time.perf_counter_ns() - started)
                    not_present += sum(s != "present" for row in found.statuses for s in row)
                cells.append(_cell(entities, width, lat_ns, not_present))
        return {
            "store": store,
            "online_store": described,
            "verify_mismatches": mismatches,
            "cells": cells,
            "peak_rss_mib": _peak_rss_mib(),
        }


def _verify(features: Any, folder: Path, spec: dict[str, Any]) -> int:
    """Values of a key sample that differ from the newest Parquet row (all features)."""
    biggest = max(spec["feature_sets"], key=lambda n: spec["feature_sets"][n])
    sample = random.Random(7).sample(range(spec["keys"]), min(VERIFY_KEYS, spec["keys"]))
    want = expected_rows(folder, spec, sample)
    found = features.get_online_features(biggest, [{"key": k} for k in sample])
    bad = 0
    for key, values, statuses in zip(sample, found.values, found.statuses, strict=True):
        expect = want[key][: len(values)]
        bad += sum(s != "present" for s in statuses)
        bad += sum(not _same(a, b) for a, b in zip(values, expect, strict=True))
    return bad


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (as ``feast_online.py`` computes it)."""
    rank = math.ceil(q / 100.0 * len(sorted_ms))
    return sorted_ms[max(0, min(len(sorted_ms), rank) - 1)]


def _cell(entities: int, width: int, lat_ns: list[int], not_present: int) -> dict[str, Any]:
    ms = sorted(x / 1e6 for x in lat_ns)
    return {
        "entities": entities,
        "features": width,
        "p50_ms": round(percentile(ms, 50), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "max_ms": round(ms[-1], 4),
        "n": len(ms),
        "not_present": not_present,
    }


# -- HTTP (in this process) -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_grid(project_dir: Path, store: str, grid: dict[str, Any], log: Path) -> dict[str, Any]:
    """Start ``headrace serve`` for the project, time the grid over one keep-alive connection."""
    spec = json.loads((project_dir.parent / "spec.json").read_text())
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.pop(STORE_ENV, None)
    if store == "redis":
        env[STORE_ENV] = REDIS_URL
    cmd = [str(Path(sys.executable).parent / "headrace"), "serve", "--project", str(project_dir),
           "--port", str(port)]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        server = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        started = time.perf_counter()
        health = _wait_healthy(server, port, timeout=60)
        startup = time.perf_counter() - started
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json"}
        cells = []
        for entities in grid["entities"]:
            for width in grid["features"]:
                batches = requests_for(spec["keys"], entities, grid["warmup"] + grid["requests"],
                                       seed=entities * 1000 + width)  # fmt: skip
                bodies = [
                    json.dumps({"feature_set": f"f{width}", "entities": b}).encode()
                    for b in batches
                ]
                for body in bodies[: grid["warmup"]]:
                    _post(conn, body, headers)
                gc.collect()
                lat_ns = []
                not_present = 0
                for body in bodies[grid["warmup"] :]:
                    t0 = time.perf_counter_ns()
                    answer = _post(conn, body, headers)
                    lat_ns.append(time.perf_counter_ns() - t0)
                    not_present += sum(
                        s != "present" for item in answer["results"] for s in item["statuses"]
                    )
                cells.append(_cell(entities, width, lat_ns, not_present))
        conn.close()
        return {"store": store, "health": health, "startup_s": startup, "cells": cells,
                "server_peak_rss_mib": _vmhwm(server.pid)}  # fmt: skip
    finally:
        _stop(server)


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> Any:
    conn.request("POST", "/features/online", body, headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    return json.loads(data)


def _wait_healthy(server: subprocess.Popen[bytes], port: int, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"headrace serve exited with {server.returncode} before /health")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            response = conn.getresponse()
            if response.status == 200:
                body = json.loads(response.read())
                conn.close()
                return body
            conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"headrace serve did not answer /health within {timeout:.0f}s")
        time.sleep(0.1)


def _vmhwm(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server this script started (by its PID)."""
    if server.poll() is None:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(5)


# -- Redis db 15 -----------------------------------------------------------------------------


def flush_redis() -> None:
    """FLUSHDB of database 15, the only one this benchmark writes."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.flushdb()
    finally:
        client.close()


# -- main ------------------------------------------------------------------------------------


def _cpu_stall_us() -> int | None:
    """Microseconds in which some task waited for a CPU (Linux PSI), None without PSI."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(first.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def _mark() -> tuple[float, int | None]:
    return time.monotonic(), _cpu_stall_us()


def _contention(mark: tuple[float, int | None]) -> dict[str, Any]:
    """How busy the machine was during a phase: % of its time some task waited for a CPU."""
    wall = time.monotonic() - mark[0]
    now = _cpu_stall_us()
    stall = None
    if now is not None and mark[1] is not None and wall > 0:
        stall = round(100 * (now - mark[1]) / 1e6 / wall, 1)
    return {"loadavg_after": os.getloadavg(), "cpu_stall_pct": stall}


def _materialise_case(folder: Path, stores: list[str], logs: Path) -> list[dict[str, Any]]:
    """A fresh copy of the prepared project, then one timed materialisation per store."""
    work = folder / "project"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(folder / "pristine", work)
    me = [sys.executable, str(Path(__file__).resolve())]
    out = []
    for store in stores:
        if store == "redis":
            flush_redis()
        print(f"  materialise {folder.name} -> {store} ...", flush=True)
        mark = _mark()
        record = run_child([*me, "--child", "materialise", "--data", str(work), "--store", store],
                           log=logs / f"materialise-{folder.name}-{store}.log",
                           timeout=3600)  # fmt: skip
        record.setdefault("store", store)
        record["case"] = folder.name
        record.update(_contention(mark))
        out.append(record)
        if "error" in record:
            print(f"    failed: {record['error'][:600]}")
        else:
            print(f"    {record['rows']:,} rows in {record['seconds']:.2f} s = "
                  f"{record['rows_per_s']:,.0f} rows/s, "
                  f"peak {record['peak_rss_mib']:.0f} MiB")  # fmt: skip
    return out


def _latency(folder: Path, sides: list[str], stores: list[str], grid: dict[str, Any],
             http_cells: dict[str, Any], logs: Path) -> list[dict[str, Any]]:  # fmt: skip
    """The grid in process (a child per store), over HTTP (served), and by Feast."""
    me = [sys.executable, str(Path(__file__).resolve())]
    project = folder / "project"
    latency: list[dict[str, Any]] = []
    if "headrace" in sides:
        for store in stores:
            print(f"latency in process, {store} ...", flush=True)
            mark = _mark()
            record = run_child([*me, "--child", "latency", "--data", str(project),
                                "--store", store, "--grid", json.dumps(grid)],
                               log=logs / f"latency-{store}.log", timeout=3600)  # fmt: skip
            record.update(side="headrace", mode="inproc", store=store)
            record.update(_contention(mark))
            latency.append(record)
    if "http" in sides:
        for store in stores:
            print(f"latency over HTTP, {store} ...", flush=True)
            mark = _mark()
            try:
                record = http_grid(project, store, http_cells, log=logs / f"serve-{store}.log")
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                record = {"error": f"{type(exc).__name__}: {exc}"}
            record.update(side="headrace", mode="http", store=store)
            record.update(_contention(mark))
            latency.append(record)
    if "redis" in stores:
        flush_redis()  # headrace's keys out, before Feast (which flushes db 15 too)
    if "feast" in sides:
        python = HERE / ".venvs" / "feast" / "bin" / "python"
        for store in stores:
            print(f"latency Feast, {store} ...", flush=True)
            cmd = [str(python), str(HERE / "peers" / "feast_online.py"), "--data", str(folder),
                   "--store", store, "--requests", str(grid["requests"]),
                   "--entities", ",".join(map(str, grid["entities"])),
                   "--features", ",".join(map(str, grid["features"]))]  # fmt: skip
            mark = _mark()
            record = run_child(cmd, log=logs / f"feast-{store}.log", timeout=3600)
            record.update(side="feast", mode="inproc", store=store)
            record.update(_contention(mark))
            latency.append(record)
    return latency


def _versions() -> dict[str, Any]:
    import sqlite3
    from importlib.metadata import version

    import redis

    out: dict[str, Any] = {"sqlite": sqlite3.sqlite_version, "python": sys.version.split()[0]}
    for name in ("headrace", "polars", "fastapi", "uvicorn", "redis", "orjson"):
        out[name] = version(name)
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        out["redis_server"] = client.info("server")["redis_version"]
    except redis.RedisError as exc:
        out["redis_server"] = f"unreachable: {exc}"
    finally:
        client.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--rows-per-key", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2000, help="timed requests per cell")
    ap.add_argument("--warmup", type=int, default=50, help="untimed requests per cell")
    ap.add_argument("--big-keys", type=int, default=1_000_000,
                    help="entities of the materialisation case (0: skip it)")  # fmt: skip
    ap.add_argument("--big-rows-per-key", type=int, default=2)
    ap.add_argument("--sides", default="headrace,http,feast")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--max-age-days", type=int, default=7, help="regenerate older data")
    ap.add_argument("--smoke", action="store_true", help="CI: headrace, SQLite, tiny data")
    ap.add_argument("--child", choices=("prepare", "materialise", "latency"),
                    help=argparse.SUPPRESS)  # fmt: skip
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--grid", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        children = {
            "prepare": lambda: child_prepare(args.data),
            "materialise": lambda: child_materialise(args.data, args.store),
            "latency": lambda: child_latency(args.data, args.store, json.loads(args.grid)),
        }
        print(json.dumps(children[args.child]()))
        return 0

    grid = {"entities": list(ENTITIES), "features": list(FEATURES),
            "requests": args.requests, "warmup": args.warmup}  # fmt: skip
    http_cells = grid
    if args.smoke:
        args.keys, args.big_keys, args.sides, args.stores = 100, 0, "headrace,http", "sqlite"
        grid.update(requests=100, warmup=10)
        http_cells = {**grid, "entities": [1, 100], "features": [50]}
    sides = [s for s in args.sides.split(",") if s]
    stores = [s for s in args.stores.split(",") if s]
    if any(s not in {"headrace", "http", "feast"} for s in sides) or any(
        s not in {"sqlite", "redis"} for s in stores
    ):
        ap.error("--sides: headrace,http,feast; --stores: sqlite,redis")
    max_age = timedelta(days=args.max_age_days)

    me = [sys.executable, str(Path(__file__).resolve())]
    label = f"k{args.keys}_r{args.rows_per_key}"
    folder = HERE / "data" / f"online_{label}"
    if args.smoke:
        folder = Path(tempfile.mkdtemp(prefix="headrace-online-smoke-")) / "online"
    logs = folder / "logs"
    started = time.monotonic()
    print(f"data {folder} ...", flush=True)
    spec = generate(folder, keys=args.keys, rows_per_key=args.rows_per_key, views=2, features=30,
                    max_age=max_age)  # fmt: skip
    cases = [folder]
    if args.big_keys:
        big = HERE / "data" / f"online_big_k{args.big_keys}_r{args.big_rows_per_key}"
        print(f"data {big} ...", flush=True)
        generate(big, keys=args.big_keys, rows_per_key=args.big_rows_per_key, views=1,
                 features=10, max_age=max_age)  # fmt: skip
        cases.append(big)
    failures: list[str] = []
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform,
                    "loadavg_start": os.getloadavg()},
        "sizes": {"keys": args.keys, "rows_per_key": args.rows_per_key, "views": 2,
                  "features_per_view": 30, "big_keys": args.big_keys,
                  "big_rows_per_key": args.big_rows_per_key, "big_features": 10},
        "grid": grid,
        "versions": _versions(),
        "data_generated_at": spec["generated_at"],
    }  # fmt: skip
    try:
        prepared = {}
        for case in cases:
            print(f"prepare {case.name} (pipeline run, not timed) ...", flush=True)
            prepared[case.name] = run_child(
                [*me, "--child", "prepare", "--data", str(case)],
                log=logs / f"prepare-{case.name}.log", timeout=7200,
            )  # fmt: skip
            if "error" in prepared[case.name]:
                print(prepared[case.name]["error"])
                return 1
        result["prepare"] = prepared

        print("materialisation", flush=True)
        materialised = _materialise_case(folder, stores, logs)
        failures += [f"materialise {m['store']}" for m in materialised if "error" in m]

        latency = _latency(folder, sides, stores, grid, http_cells, logs)
        for record in latency:
            where = f"{record['side']} {record['mode']} {record['store']}"
            if "error" in record:
                failures.append(where)
                print(f"  {where} failed: {str(record['error'])[:600]}")
            elif record.get("verify_mismatches") or any(
                c.get("not_present") for c in record.get("cells", [])
            ):
                failures.append(f"{where}: wrong or missing values")
        result["latency"] = latency

        if len(cases) > 1:
            print("materialisation, large case", flush=True)
            big_runs = _materialise_case(cases[1], stores, logs)
            failures += [f"materialise {m['case']} {m['store']}" for m in big_runs if "error" in m]
            materialised += big_runs
            shutil.rmtree(cases[1] / "project", ignore_errors=True)  # a copy; pristine stays
        result["materialisation"] = materialised
    finally:
        if "redis" in stores:
            flush_redis()

    result["targets"] = targets = _targets(latency)
    result["failures"] = failures
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = round(time.monotonic() - started, 1)
    _print(latency, materialised, targets)
    if failures:
        print("FAILED: " + "; ".join(failures))
    if args.smoke:
        shutil.rmtree(folder.parent, ignore_errors=True)
        print(f"smoke finished in {result['wall_s']} s")
        return 1 if failures else 0
    out = HERE / "results" / f"online-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"results written to {out}")
    return 1 if failures else 0


def _targets(latency: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label, mode, entities, width, limit in TARGETS:
        for record in latency:
            if record["side"] != "headrace" or record["mode"] != mode or "error" in record:
                continue
            for cell in record["cells"]:
                if cell["entities"] == entities and cell["features"] == width:
                    out.append({"target": label, "store": record["store"], "p99_ms": cell["p99_ms"],
                                "met": cell["p99_ms"] <= limit})  # fmt: skip
    return out


def _print(latency: list[dict[str, Any]], materialised: list[dict[str, Any]],
           targets: list[dict[str, Any]]) -> None:  # fmt: skip
    cells = sorted({(c["entities"], c["features"]) for r in latency for c in r.get("cells", [])
                    if "p50_ms" in c})  # fmt: skip
    head = "".join(f"{str(e) + 'x' + str(k):>15}" for e, k in cells)
    print(f"\nlatency p50/p99 ms (entities x features)\n{'side':<28}{head}{'stall%':>8}")
    for record in latency:
        name = {"inproc": "in process", "http": "HTTP"}[record["mode"]]
        if record["side"] == "feast":
            name = f"Feast {record.get('version', '')}"
        found = {(c["entities"], c["features"]): c for c in record.get("cells", [])}
        row = ""
        for key in cells:
            c = found.get(key)
            text = "-" if not c or "p50_ms" not in c else f"{c['p50_ms']:.2f}/{c['p99_ms']:.2f}"
            row += f"{text:>15}"
        stall = fmt(record.get("cpu_stall_pct"), ".0f")
        print(f"{name + ' ' + record['store']:<28}{row}{stall:>8}")
    print(
        f"\n{'materialisation':<34}{'rows':>10}{'seconds':>9}{'rows/s':>11}{'peak MiB':>10}"
        f"{'stall%':>8}"
    )
    for m in materialised:
        print(f"{m.get('case', '') + ' ' + m['store']:<34}{fmt(m.get('rows'), ',.0f'):>10}"
              f"{fmt(m.get('seconds'), '.2f'):>9}{fmt(m.get('rows_per_s'), ',.0f'):>11}"
              f"{fmt(m.get('peak_rss_mib'), '.0f'):>10}"
              f"{fmt(m.get('cpu_stall_pct'), '.0f'):>8}")  # fmt: skip
    print()
    for t in targets:
        print(f"target {t['target']} [{t['store']}]: p99 {t['p99_ms']:.3f} ms -> "
              f"{'met' if t['met'] else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
