"""Dagster per-node overhead: N software-defined assets, ``dagster.materialize``.

Run in bench/.venvs/dagster:
    bench/.venvs/dagster/bin/python bench/peers/overhead_dagster.py --nodes 1000 --shape chain

In process, no daemon/webserver: ``materialize`` with an ephemeral
``DagsterInstance`` (in-memory run/event storage, temp dir for compute logs
and the default filesystem IO manager) and the in-process executor.

What it records (as Dagster normally does, nothing disabled): a run record,
the full event log for it (run/step start, input loaded, output handled,
asset materialization, step success, ... -- roughly 6-8 events per step) in
the instance's event storage, and each asset's return value pickled to disk
by the default ``fs_io_manager`` (and loaded back from disk by its
downstream step).

Build time = generating the N ``@asset`` definitions; run time = the
``materialize`` call (which also resolves the asset graph into a job).
Each repeat gets a fresh ephemeral instance, created outside the timer.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, parse_args, stdout_to_stderr, timed, upstream_of

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
warnings.filterwarnings("ignore")


def build_assets(n: int, shape: str) -> list:
    import dagster as dg

    assets = []
    for i in range(n):
        up = upstream_of(i, shape)
        if up is None:

            def root():
                return 1

            assets.append(dg.asset(name=f"n{i}")(root))
        else:

            def child(x):
                return 1

            assets.append(dg.asset(name=f"n{i}", ins={"x": dg.AssetIn(f"n{up}")})(child))
    return assets


def main() -> None:
    args = parse_args("dagster")
    import dagster as dg

    logging.disable(logging.WARNING)  # Dagster's console logger; events still go to storage
    n, shape = args.nodes, args.shape
    # Dagster walks the asset graph recursively in places. One N=1000 chain run
    # (of ~8) failed with "DagsterInvalidDefinitionError: Failed to resolve asset
    # job __ephemeral_asset_job__" (cause cut off; likely RecursionError, order
    # depends on hash seed). A user with a 1000-deep chain needs the same headroom.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * n + 1000))
    build_s, run_s, events = [], [], []
    with stdout_to_stderr(), tempfile.TemporaryDirectory(prefix="dagster-bench-") as tmp:
        os.environ["DAGSTER_HOME"] = tmp  # never touch a user's ~/.dagster
        # warm-up (imports, lazy init) -- not timed
        with dg.DagsterInstance.ephemeral(tempdir=os.path.join(tmp, "warm")) as inst:
            assert dg.materialize(build_assets(5, shape), instance=inst).success
        for r in range(args.repeats):
            bt, assets = timed(build_assets, n, shape)
            with dg.DagsterInstance.ephemeral(tempdir=os.path.join(tmp, f"r{r}")) as inst:
                rt, res = timed(dg.materialize, assets, instance=inst)
                assert res.success
                # honest-work check (untimed): the run's events are in storage
                events.append(len(inst.all_logs(res.run_id)))
                mats = len(res.get_asset_materialization_events())
                assert mats == n, (mats, n)
            build_s.append(bt)
            run_s.append(rt)
    emit(
        tool="dagster",
        version=dg.__version__,
        shape=shape,
        nodes=n,
        run_seconds=run_s,
        build_seconds=build_s,
        records=(
            f"run + {events[-1]} events in ephemeral instance; outputs pickled by fs_io_manager"
        ),
    )


if __name__ == "__main__":
    main()
