import threading
import time

import hypothesis.strategies as st
import polars as pl
from hypothesis import HealthCheck, given, settings

import headrace as hr
from headrace.core.records import NodeStatus


def test_independent_nodes_run_in_parallel(project: hr.Project) -> None:
    barrier = threading.Barrier(2, timeout=5)
    pipeline = hr.Pipeline("p")

    def meet() -> int:
        barrier.wait()  # only returns when both nodes are running at the same time
        return 1

    pipeline.source(meet, name="left", ephemeral=True)
    pipeline.source(meet, name="right", ephemeral=True)
    result = project.run(pipeline, executor=hr.LocalExecutor(max_workers=2))
    assert result.ok, result.records


def test_failure_stops_only_its_downstream_with_keep_going(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")

    def boom() -> pl.DataFrame:
        raise ValueError("bad input file")

    pipeline.source(boom, name="broken")
    pipeline.transform(lambda broken: broken, name="after_broken")
    pipeline.source(lambda: pl.DataFrame({"x": [1]}), name="fine")
    pipeline.transform(lambda fine: fine, name="after_fine")
    result = project.run(pipeline, fail_fast=False)
    assert result.statuses() == {
        "broken": NodeStatus.FAILED,
        "after_broken": NodeStatus.UPSTREAM_FAILED,
        "fine": NodeStatus.SUCCEEDED,
        "after_fine": NodeStatus.SUCCEEDED,
    }
    assert "ValueError: bad input file" in (result.record("broken").error or "")


def test_fail_fast_starts_nothing_new_after_a_failure(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")

    def boom() -> None:
        raise RuntimeError("no")

    pipeline.source(boom, name="a", ephemeral=True)
    for i in range(5):
        pipeline.transform(lambda: time.sleep(0.05), name=f"slow{i}", ephemeral=True)
    result = project.run(pipeline, fail_fast=True, executor=hr.LocalExecutor(max_workers=1))
    statuses = result.statuses()
    assert statuses["a"] is NodeStatus.FAILED
    assert all(s is NodeStatus.CANCELLED for n, s in statuses.items() if n != "a")


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    size = draw(st.integers(1, 12))
    edges: dict[str, list[str]] = {}
    for i in range(size):
        parents = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        edges[f"n{i}"] = [f"n{p}" for p in parents]
    return edges


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edges=dags(), workers=st.integers(1, 4))
def test_every_node_runs_once_after_its_inputs(
    project: hr.Project, edges: dict[str, list[str]], workers: int
) -> None:
    order: list[str] = []
    lock = threading.Lock()
    pipeline = hr.Pipeline("random")
    for name, parents in edges.items():
        pipeline.transform(_with_params(name, parents, lock, order), name=name, ephemeral=True)
    result = project.run(pipeline, executor=hr.LocalExecutor(max_workers=workers))
    assert result.ok
    assert sorted(order) == sorted(edges)
    position = {name: i for i, name in enumerate(order)}
    for name, parents in edges.items():
        assert all(position[p] < position[name] for p in parents)


def _with_params(name: str, parents: list[str], lock: threading.Lock, order: list[str]):  # type: ignore[no-untyped-def]
    """A function whose parameters are exactly the node's parents (Hamilton-style binding)."""
    namespace: dict[str, object] = {"lock": lock, "order": order}
    args = ", ".join(parents)
    exec(
        f"def {name}({args}):\n"
        f"    with lock:\n        order.append({name!r})\n    return {name!r}\n",
        namespace,
    )
    return namespace[name]
