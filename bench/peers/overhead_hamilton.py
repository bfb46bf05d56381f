"""Hamilton (sf-hamilton) per-node overhead: the in-memory floor.

Run in bench/.venvs/hamilton:
    bench/.venvs/hamilton/bin/python bench/peers/overhead_hamilton.py --nodes 1000 --shape chain

What it records: nothing. The Hamilton driver walks its function graph in
memory and returns the requested outputs; no run/node records, no metadata
DB, no persisted outputs. Use it as the lower bound of what a Python DAG
walker costs per node.

The N nodes are N generated module-level functions ``n0 .. n{N-1}``; each
parameter names its upstream function (Hamilton's wiring convention).
Build time = module generation + ``driver.Builder().build()``;
run time = ``dr.execute(final_vars)``, where final_vars are the sinks (the
last node for the chain, every child for the fan-out).
"""

from __future__ import annotations

import logging
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, parse_args, stdout_to_stderr, timed, upstream_of

os.environ.setdefault("HAMILTON_TELEMETRY_ENABLED", "false")  # no network calls
logging.disable(logging.WARNING)


def make_module(n: int, shape: str) -> types.ModuleType:
    lines = []
    for i in range(n):
        up = upstream_of(i, shape)
        if up is None:
            lines.append(f"def n{i}() -> int:\n    return 1\n")
        else:
            lines.append(f"def n{i}(n{up}: int) -> int:\n    return 1\n")
    mod = types.ModuleType(f"hamilton_bench_{shape}_{n}")
    exec(compile("\n".join(lines), mod.__name__, "exec"), mod.__dict__)
    sys.modules[mod.__name__] = mod  # Hamilton inspects functions' modules
    return mod


def main() -> None:
    args = parse_args("hamilton")
    from importlib.metadata import version

    from hamilton import driver

    n, shape = args.nodes, args.shape
    # Hamilton walks the graph recursively; a 1000-deep chain needs headroom.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 50 * n + 1000))
    sinks = [f"n{n - 1}"] if shape == "chain" else [f"n{i}" for i in range(1, n)]

    def build(k: int):
        return driver.Builder().with_modules(make_module(k, shape)).build()

    build_s, run_s = [], []
    with stdout_to_stderr():
        # warm-up on a tiny graph (imports, lazy init) -- not timed
        build(5).execute(["n4"])
        for _ in range(args.repeats):
            bt, dr = timed(build, n)
            rt, out = timed(dr.execute, sinks)
            assert len(out) == len(sinks), out
            build_s.append(bt)
            run_s.append(rt)
    emit(
        tool="hamilton",
        version=version("sf-hamilton"),
        shape=shape,
        nodes=n,
        run_seconds=run_s,
        build_seconds=build_s,
        records="none (in-memory only)",
    )


if __name__ == "__main__":
    main()
