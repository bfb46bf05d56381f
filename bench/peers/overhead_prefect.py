"""Prefect 3 per-node overhead: one flow calling N tasks.

Run in bench/.venvs/prefect:
    bench/.venvs/prefect/bin/python bench/peers/overhead_prefect.py --nodes 1000 --shape chain

In process, no separately started server: Prefect's default *ephemeral* mode
(on first use it starts its own local API server and SQLite database under
PREFECT_HOME, which we point at a temp dir so ~/.prefect is never touched).

What it records (defaults, nothing disabled): a flow run and one task run per
task call with its state transitions (Pending -> Running -> Completed), plus
the run logs shipped to the API by its APILogHandler, all in the ephemeral
server's SQLite DB. Result persistence stays at Prefect's default (off). Only
the *console* log handler is removed, so nothing is printed; log records
still go to the API.

Caveat that matters for the comparison: in Prefect 3, task-run state updates
inside a flow are emitted as *events*, and the server writes the task-run
records from them asynchronously. The flow call returns long before those
records are durable. So per repeat we report both
  - ``run_seconds``: the flow call (what a user waits for), and
  - ``records_settled_seconds``: how much longer, after the flow returned,
    until the API reports all N task runs of that flow run as COMPLETED
    (polled every 0.2 s via /task_runs/count; not part of run_seconds).
``per_node_ms_with_records`` = median(run + settle) / N.

Tasks are called directly (``t(x)``, Prefect's plain sequential style); the
fan-out calls the N-1 children one after another with the root's result.
Build time = creating the N named task objects (``task.with_options``).
The server start-up is paid in an untimed warm-up flow.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, parse_args, stdout_to_stderr, timed

warnings.filterwarnings("ignore")
_TMP = tempfile.TemporaryDirectory(prefix="prefect-bench-")
os.environ["PREFECT_HOME"] = _TMP.name  # fresh SQLite DB, never ~/.prefect
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")


def _drop_console_handlers() -> None:
    # PrefectConsoleHandler is a StreamHandler; APILogHandler is not, so it stays.
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in list(lg.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)


def wait_for_records(flow_run_id, expected: int, timeout: float = 300.0) -> tuple[int, float]:
    """Poll until `expected` COMPLETED task runs of the flow run are in the API.

    Returns (count seen, seconds waited).
    """
    from prefect import get_client

    body = {
        "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
        "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }
    t0 = time.perf_counter()
    with get_client(sync_client=True) as client:
        while True:
            count = int(client._client.post("/task_runs/count", json=body).json())
            waited = time.perf_counter() - t0
            if count >= expected or waited > timeout:
                return count, waited
            time.sleep(0.2)


def main() -> None:
    args = parse_args("prefect")
    import prefect
    from prefect import flow, runtime, task

    n, shape = args.nodes, args.shape

    @task
    def noop(x=None):
        return 1

    def build(k: int) -> list:
        return [noop.with_options(name=f"n{i}") for i in range(k)]

    def make_flow(tasks: list, k: int):
        @flow(name=f"bench-{shape}")
        def bench_flow():
            if shape == "chain":
                x = tasks[0]()
                for i in range(1, k):
                    x = tasks[i](x)
            else:
                root = tasks[0]()
                for i in range(1, k):
                    tasks[i](root)
            return runtime.flow_run.id

        return bench_flow

    build_s, run_s, settle_s, recorded = [], [], [], []
    with stdout_to_stderr():
        # warm-up: starts the ephemeral API server + creates the DB -- not timed
        make_flow(build(5), 5)()
        _drop_console_handlers()
        wait_for_records(make_flow(build(5), 5)(), 5)
        for _ in range(args.repeats):
            bt, tasks = timed(build, n)
            rt, fr_id = timed(make_flow(tasks, n))
            count, settle = wait_for_records(fr_id, n)
            build_s.append(bt)
            run_s.append(rt)
            settle_s.append(settle)
            recorded.append(count)
    with_records = statistics.median(r + s for r, s in zip(run_s, settle_s, strict=True))
    emit(
        tool="prefect",
        version=prefect.__version__,
        shape=shape,
        nodes=n,
        run_seconds=run_s,
        build_seconds=build_s,
        records_settled_seconds=[round(s, 3) for s in settle_s],
        per_node_ms_with_records=round(with_records / n * 1000.0, 6),
        records=(
            f"flow run + {min(recorded)}/{n} COMPLETED task runs per run"
            " in ephemeral API (SQLite) + API logs"
        ),
    )


if __name__ == "__main__":
    main()
